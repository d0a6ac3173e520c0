"""Firth's bias-reduced logistic regression (Firth 1993; Heinze & Schemper 2002, as R's logistf).

Maximises the penalised log-likelihood ``l(beta) + 1/2 log det I(beta)`` (Jeffreys prior), whose
estimates stay finite under complete or quasi-complete separation, where maximum likelihood
diverges. Newton-Raphson on the modified score ``U*(beta) = X' (y - p + h (1/2 - p))`` with
``h`` the diagonal of the weighted hat matrix, a step cap of 5 and step halving on the
penalised log-likelihood (logistf's defaults: maxstep 5, maxhs 5 halvings per step).

The penalty is invariant to affine changes of the covariates, so the fit runs on standardised
columns (better conditioned) and the coefficients are mapped back. Standard errors are the square
roots of the diagonal of ``I(beta)^-1`` at the estimate (logistf's ``var``); logistf's default
confidence intervals are profile penalised likelihood intervals, which are not computed here.
"""

from __future__ import annotations

import numpy as np

__all__ = ["firth_logistic", "FIRTH_METHOD"]

FIRTH_METHOD = ("Firth's bias-reduced logistic regression (penalised likelihood with the Jeffreys prior, "
                "Firth 1993; as R logistf)")


def _penalised_loglik(Z, y, b):
    eta = Z @ b
    p = 0.5 * (1.0 + np.tanh(0.5 * eta))
    w = p * (1.0 - p)
    sign, logdet = np.linalg.slogdet((Z * w[:, None]).T @ Z)
    ll = float(np.sum(y * eta - np.logaddexp(0.0, eta)))
    return ll + 0.5 * logdet if sign > 0 else -np.inf


def firth_logistic(X, y, *, max_iter: int = 200, tol: float = 1e-10, max_step: float = 5.0,
                   max_halvings: int = 25) -> dict:
    """Fit ``logit P(y = 1) = b0 + X beta`` by Firth's penalised likelihood.

    ``X``: (n, k) array (k may be 0), ``y``: 0/1. Returns dict(coefficients (k,), intercept,
    se (k + 1,: intercept first), converged, iterations, penalised_loglik, fitted).
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    y = np.asarray(y, dtype=float)
    n, k = X.shape
    mean, sd = X.mean(axis=0), X.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    Z = np.column_stack([np.ones(n), (X - mean) / sd])
    b = np.zeros(k + 1)
    f = _penalised_loglik(Z, y, b)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        p = 0.5 * (1.0 + np.tanh(0.5 * (Z @ b)))
        w = p * (1.0 - p)
        info = (Z * w[:, None]).T @ Z
        inv = np.linalg.pinv(info, hermitian=True)
        h = w * np.einsum("ij,jk,ik->i", Z, inv, Z)
        score = Z.T @ (y - p + h * (0.5 - p))
        step = inv @ score
        biggest = np.max(np.abs(step)) if step.size else 0.0
        if biggest > max_step:
            step *= max_step / biggest
        t = 1.0
        for _ in range(max_halvings):
            f_new = _penalised_loglik(Z, y, b + t * step)
            if f_new >= f - 1e-12 * abs(f):
                break
            t /= 2.0
        b = b + t * step
        f = f_new
        if np.max(np.abs(t * step)) < tol and np.max(np.abs(score)) < 1e-8:
            converged = True
            break
    p = 0.5 * (1.0 + np.tanh(0.5 * (Z @ b)))
    w = p * (1.0 - p)
    cov_z = np.linalg.pinv((Z * w[:, None]).T @ Z, hermitian=True)
    beta = b[1:] / sd
    intercept = float(b[0] - mean @ beta)
    # back to X's scale: theta = A b with A = [[1, -mean/sd], [0, diag(1/sd)]]
    A = np.zeros((k + 1, k + 1))
    A[0, 0] = 1.0
    A[0, 1:] = -mean / sd
    A[1:, 1:] = np.diag(1.0 / sd)
    cov = A @ cov_z @ A.T
    return {"coefficients": beta, "intercept": intercept, "se": np.sqrt(np.clip(np.diag(cov), 0, None)),
            "converged": converged, "iterations": it, "penalised_loglik": f, "fitted": p}
