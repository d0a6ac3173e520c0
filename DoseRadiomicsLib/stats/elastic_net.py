"""L1 / elastic-net penalised logistic regression by coordinate descent, as R's glmnet does it.

For each lambda on a decreasing path the objective

    -(1/n) loglik(b0, beta) + lambda * (alpha * ||beta||_1 + (1 - alpha) / 2 * ||beta||_2^2)

is minimised over the intercept ``b0`` (never penalised) and ``beta``, the coefficients of the
standardised features (mean 0, population SD 1; glmnet's ``standardize=TRUE``). The algorithm is
Friedman, Hastie & Tibshirani (2010, J Stat Softw 33(1)):

* an outer IRLS loop replaces the log-likelihood by its quadratic approximation at the current
  fit (weights ``p (1 - p)`` with ``p`` capped to [1e-5, 1 - 1e-5] so that a near-certain
  patient does not stall the descent; the residuals are the exact ``y - p``, so the cap changes
  the speed, never the fixed point). A step that does not lower the objective is halved
  (glmnet has no such guard; it costs one product);
* an inner loop of cyclic coordinate descent with soft-thresholding: a pass over every
  coordinate that is nonzero or would move, then passes over the active set (the nonzero
  coefficients). Radiomics features are strongly correlated, which makes plain coordinate
  descent crawl: glmnet's stopping rule (``thresh``: no update changes the objective by more
  than 1e-7 of the null deviance) left errors of 10-25% of lambda in the optimality conditions
  on the 220-patient demo cohort. So, where glmnet would iterate the active set further, a
  pass that leaves the nonzero set and its signs unchanged is followed by the exact solution of
  the active set's problem (smooth for fixed signs: one linear solve; a sign that would flip
  stops the step at 0 and leaves the set). Exactly duplicated features (common in pyradiomics)
  enter with the first of them only, as in glmnet's cyclic order;
* the fast route, tried first at every lambda: Newton's method on the active set with its signs
  fixed (the smooth problem the exact step above solves, here on the logistic loss itself),
  warm-started on the line through the previous two lambdas' solutions (where their signs agree),
  a sign that would flip stopping the step at 0, each step one Cholesky solve, iterated until the
  optimality conditions hold to ``tol`` (no further), then the optimality check on all features
  adding every violator. For a fixed active set and signs the
  minimiser is the same point either route reaches, so the numbers agree to the tolerance below
  (measured on bootstrap replicates' paths: the objective within 2e-7 relative); it takes
  a few small linear solves per lambda instead of IRLS rounds of coordinate passes (3-4.5x fewer
  CPU-s per bootstrap replicate, ``benchmarks/bench_bootstrap.py``). When it cannot finish
  (a singular active Gram matrix, e.g. exactly collinear features; no descent; signs that keep
  cycling) the IRLS + coordinate-descent route above continues from where it stopped;
* warm starts along the path and the sequential strong rule (Tibshirani et al. 2012) to screen
  features, with a vectorised check of the optimality (KKT) conditions on all features after
  each fit, so a wrongly screened feature is added and the fit repeated;
* convergence: the KKT conditions hold to ``tol`` * lambda (gradient = lambda * sign for a
  nonzero coefficient, |gradient| <= lambda for a zero one, zero mean residual), or, for
  near-collinear active sets, as far as rounding allows (no further decrease);
* glmnet's path stop: after at least 5 lambdas, stop once the fit explains ``dev_stop`` (99.9%)
  of the null deviance or the explained fraction grows by less than ``dev_change_stop`` (1e-5)
  from one lambda to the next.

Only the loop over the coefficients that are (or become) nonzero is Python; everything over
patients or over all features is a numpy product.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
from scipy.linalg.lapack import dposv as _posv
from scipy.special import expit as _expit

__all__ = ["lambda_max", "lambda_grid", "logistic_elastic_net_path", "binomial_deviance", "logistic",
           "single_threaded_blas"]

#: cv.glmnet's cap on predicted probabilities in deviances; also the cap for the IRLS weights
P_MIN = 1e-5
#: glmnet's minimum number of lambdas fitted before the path may stop (mnlam)
MIN_LAMBDAS_BEFORE_STOP = 5


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with BLAS/OpenMP limited to one thread.

    The products here are small (a few hundred patients); multi-threaded BLAS only adds
    synchronisation (measured 10-20x slower on a loaded 2-core machine) and makes sums, hence
    results, vary in the last bits between runs. Without threadpoolctl nothing changes.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn installs it
        yield
        return
    with threadpool_limits(limits=1):
        yield


def logistic(eta):
    """The logistic function 1 / (1 + exp(-eta)) without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(eta, dtype=float)))


def binomial_deviance(y: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """Mean binomial deviance -2 mean(y log p + (1-y) log(1-p)) per column of ``prob``, for 0/1
    outcomes ``y``.

    ``prob`` is capped to [1e-5, 1 - 1e-5] as glmnet does, so a confident wrong prediction
    costs a finite amount. ``prob`` may be 1-D (one model) or n x k (k models). With y 0 or 1 the
    sum is log p or log(1 - p) exactly, so one log of the chosen term gives the same numbers with
    fewer operations (the path calls this once per lambda).
    """
    prob = np.clip(prob, P_MIN, 1 - P_MIN)
    yy = y[:, None] if prob.ndim == 2 else y
    return -2 * np.mean(np.log(np.where(yy == 1, prob, 1 - prob)), axis=0)


def _standardise(X: np.ndarray):
    mean = X.mean(axis=0)
    sd = X.std(axis=0)
    return (X - mean) / np.where(sd > 0, sd, 1.0), mean, sd


def lambda_max(X: np.ndarray, y, alpha: float = 1.0) -> float:
    """Smallest lambda at which every coefficient is 0 (glmnet):
    ``max_j |z_j'(y - ybar)| / (n * alpha)`` on standardised features ``z_j``
    (``alpha`` floored at 1e-3 as glmnet does for ridge-like penalties)."""
    y = np.asarray(y, dtype=float)
    Z, _, _ = _standardise(np.asarray(X, dtype=float))
    return float(np.max(np.abs(Z.T @ (y - y.mean()))) / y.size / max(alpha, 1e-3))


def lambda_grid(lam_max: float, n_lambdas: int = 100, min_ratio: float = 1e-3) -> np.ndarray:
    """glmnet's path: ``n_lambdas`` values evenly spaced on the log scale from ``lam_max`` down to
    ``lam_max * min_ratio``."""
    return lam_max * np.logspace(0.0, math.log10(min_ratio), int(n_lambdas))


def _first_of_duplicates(Z: np.ndarray) -> np.ndarray:
    """Mask keeping the first column of every group of identical standardised columns (up to sign)."""
    signs = np.sign(Z[np.argmax(np.abs(Z) > 1e-9, axis=0), np.arange(Z.shape[1])])
    key = np.round(Z * np.where(signs == 0, 1.0, signs), 9)
    keep = np.ones(Z.shape[1], dtype=bool)
    # sorting whole columns is the slow part: only columns whose projection on a fixed vector ties
    # with another's (within rounding) can be identical, and only those are compared exactly
    h = np.linspace(1.0, 2.0, key.shape[0]) @ key
    order = np.argsort(h, kind="stable")
    hs = h[order]
    near = np.diff(hs) <= 1e-9 * (1.0 + np.abs(hs[1:])) * key.shape[0]
    tied = np.zeros(h.size, dtype=bool)
    tied[:-1] |= near
    tied[1:] |= near
    cand = np.sort(order[tied])
    if cand.size:
        _, first = np.unique(key[:, cand], axis=1, return_index=True)
        keep[cand] = False
        keep[cand[first]] = True
    return keep


def _solve_or_none(M: np.ndarray, rhs: np.ndarray):
    """Solution of ``M x = rhs``, or None when M is (numerically) singular."""
    try:
        x = np.linalg.solve(M, rhs)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(x)) or np.linalg.norm(M @ x - rhs) > 1e-8 * max(np.linalg.norm(rhs), 1e-300):
        return None
    return x


def _spd_solve_or_none(M: np.ndarray, rhs: np.ndarray):
    """Solution of ``M x = rhs`` for a symmetric positive semi-definite ``M`` by one Cholesky
    factorisation (LAPACK posv, a single call), or None when M is not numerically positive
    definite (a pivot below 1e-7 of the largest, i.e. condition number above ~1e14: exactly
    collinear features)."""
    c, x, info = _posv(M, rhs)
    if info != 0:
        return None
    d = c.diagonal()
    if np.minimum.reduce(d) <= 1e-7 * np.maximum.reduce(d) or not math.isfinite(float(x @ x)):
        return None
    return x


def _penalty_descent_direction(M: np.ndarray, b: np.ndarray, l1: float, l2: float):
    """A unit null vector of M (intercept first) along which the penalty decreases, or None."""
    values, vectors = np.linalg.eigh(M)  # ascending
    if values[0] > 1e-9 * values[-1]:
        return None
    v = vectors[:, 0]
    slope = l1 * float(np.sign(b) @ v[1:]) + l2 * float(b @ v[1:])
    direction = -v if slope > 0 else v
    return direction if np.any(b * direction[1:] < 0) else None


def _distance_to_first_zero(b: np.ndarray, d: np.ndarray) -> float:
    towards = b * d < 0
    return float(np.min(-b[towards] / d[towards]))


class _Fit:
    """Solver state on the standardised features of one data set."""

    def __init__(self, Z: np.ndarray, y: np.ndarray, alpha: float, tol: float, max_passes: int):
        self.Z = Z
        self.ZT = np.ascontiguousarray(Z.T)  # one feature per row: contiguous for the dot products
        self.y = y
        self.n, self.p = Z.shape
        self.alpha = alpha
        self.tol = tol
        ybar = float(y.mean())
        self.b0 = math.log(ybar / (1 - ybar))
        self.beta = np.zeros(self.p)
        self.null_dev = float(binomial_deviance(y, np.full(self.n, ybar)))
        self.grad = self.ZT @ (y - ybar) / self.n  # the gradient at the current coefficients
        self.passes = 0
        self.max_passes = max_passes
        self.converged = True

    # -- objective and optimality ------------------------------------------------------------
    def eta(self, b0, beta):
        return b0 + self.Z @ beta

    def objective(self, b0, beta, lam):
        eta = self.eta(b0, beta)
        nll = float(np.mean(np.logaddexp(0.0, eta) - self.y * eta))
        return nll + lam * (self.alpha * float(np.abs(beta).sum())
                            + 0.5 * (1 - self.alpha) * float(beta @ beta))

    @staticmethod
    def _kkt_ok(g, r_mean, beta, l1, l2, slack) -> bool:
        """Optimality within ``slack``: g_j = l1 sign(b_j) + l2 b_j where b_j != 0, |g_j| <= l1
        where b_j = 0, and a zero mean residual (the unpenalised intercept)."""
        if abs(r_mean) > slack:
            return False
        nz = beta != 0
        if np.any(np.abs(g[nz] - l1 * np.sign(beta[nz]) - l2 * beta[nz]) > slack):
            return False
        return not np.any(np.abs(g[~nz]) > l1 + slack)

    def _out_of_passes(self) -> bool:
        if self.passes >= self.max_passes:
            self.converged = False
        return not self.converged

    def extrapolate(self, b0_before, beta_before, ratio):
        """Warm start for the next lambda on the line through the last two solutions (in log
        lambda, ``ratio`` = the next log step over the last one), for the coefficients nonzero with
        one sign in both that the line keeps on that sign; the others stay at the last solution.
        The fixed-sign solution moves smoothly with lambda, so this skips about one Newton step in
        seven (measured on a bootstrap replicate's paths); the solution it leads to is the same."""
        idx = np.flatnonzero(self.beta * beta_before > 0)
        if idx.size:
            pred = self.beta[idx] + ratio * (self.beta[idx] - beta_before[idx])
            ok = pred * self.beta[idx] > 0
            self.beta[idx[ok]] = pred[ok]
        self.b0 = self.b0 + ratio * (self.b0 - b0_before)

    # -- one lambda --------------------------------------------------------------------------
    def solve(self, lam: float, strong: np.ndarray) -> np.ndarray:
        """Minimise the objective at ``lam`` starting from the current coefficients.

        ``strong`` (boolean over features) is the screened set; it grows when the KKT check on
        all features finds a violation. Returns the gradient (1/n) z_j'(y - p) at the solution
        (for the next lambda's strong rule).
        """
        l1, l2 = lam * self.alpha, lam * (1 - self.alpha)
        grad = self._newton_active_set(lam, l1, l2)
        if grad is not None:
            self.grad = grad
            return grad
        while True:  # the general route (collinear active sets, cycling signs): IRLS + coordinate descent
            self._irls(lam, l1, l2, np.flatnonzero(strong | (self.beta != 0)))
            prob = logistic(self.eta(self.b0, self.beta))
            self.prob = prob
            grad = self.ZT @ (self.y - prob) / self.n
            violators = (~strong) & (self.beta == 0) & (np.abs(grad) > l1 + self.tol * lam)
            if not violators.any() or not self.converged:
                self.grad = grad
                return grad
            strong = strong | violators

    def _newton_active_set(self, lam, l1, l2):
        """The fast route: Newton's method on the active set with its signs fixed, warm-started.

        For fixed signs the objective is smooth on the active coefficients (and the intercept), so
        Newton steps (the same capped weights as the IRLS loop, the exact gradient) converge
        quadratically; a step that would flip a sign stops where the first coefficient reaches 0
        and that coefficient leaves the set (as in :meth:`_active_set_step`); after convergence the
        gradient over all features adds every zero coefficient that violates its optimality
        condition, with the sign of its gradient. This replaces most IRLS rounds and coordinate
        passes by a few small linear solves. Returns the gradient at a solution meeting the same
        optimality conditions (``tol`` * lambda) on all features, or None (singular active
        Gram matrix, e.g. exactly collinear features, no descent, or signs that keep cycling):
        then the coefficients are a descent point to start the general route from.

        Each step is a fixed handful of numpy calls on arrays of the active set's size (this loop
        is ~90% of a bootstrap replicate's time, almost all of it per-call overhead): the design
        is kept transposed (one contiguous row per coefficient), the Hessian is solved by one
        Cholesky factorisation, and ``self.prob`` keeps the fitted probabilities for the path's
        deviance.
        """
        n, y = self.n, self.y
        slack = self.tol * lam
        active = self.beta.nonzero()[0]
        b_a = self.beta[active]
        signs = np.sign(b_a)
        b0 = self.b0
        AT = self._design_t(active)  # rows: 1, then z_j of each active feature
        eta = b0 + b_a @ AT[1:]
        f = self._objective_eta(eta, b_a, lam)
        stalled = False
        for _ in range(60):
            prob = _expit(eta)
            r = y - prob
            g = AT @ r
            g /= n
            g[1:] -= l1 * signs
            if l2:
                g[1:] -= l2 * b_a
            gmax = float(np.maximum.reduce(np.abs(g)))
            if gmax <= slack:
                # solved on the active set: the optimality conditions of the zero coefficients, on
                # all features; violators enter with the sign of their gradient
                grad = self.ZT @ r
                grad /= n
                out = np.abs(grad) > l1 + slack
                out[active] = False
                viol = np.flatnonzero(out)
                if viol.size == 0:
                    self.beta[:] = 0.0
                    self.beta[active] = b_a
                    self.b0 = b0
                    self.prob = prob
                    return grad
                active = np.concatenate([active, viol])
                signs = np.concatenate([signs, np.sign(grad[viol])])
                b_a = np.concatenate([b_a, np.zeros(viol.size)])
                AT = self._design_t(active)
                stalled = False
                continue
            if stalled:
                break  # no descent left short of the tolerance: the general route takes over
            self.passes += 1
            w = np.minimum(np.maximum(prob, P_MIN), 1 - P_MIN)  # np.clip, without its wrappers
            w *= 1 - w
            BT = AT * np.sqrt(w)
            H = BT @ BT.T  # numpy computes X X' as a symmetric rank-k update
            H /= n
            if l2:
                H.flat[active.size + 2::active.size + 2] += l2  # the coefficients' diagonal
            delta = _spd_solve_or_none(H, g)
            if delta is None:
                break
            step = delta[1:]
            new = b_a + step
            crossing = signs * new < 0
            t, first = 1.0, None
            if crossing.any():
                stuck = crossing & (b_a == 0)
                if stuck.any():
                    # entered at 0 but the step would take them across: they leave together, no step
                    keep = ~stuck
                    active, signs, b_a = active[keep], signs[keep], b_a[keep]
                    AT = AT[np.concatenate([[True], keep])]
                    continue
                ratios = np.full(b_a.size, np.inf)
                ratios[crossing] = b_a[crossing] / (b_a[crossing] - new[crossing])
                first = int(np.argmin(ratios))
                t = float(ratios[first])
            # step control: the objective must fall (a Newton step on the logistic loss can overshoot)
            dA = delta @ AT
            for _halving in range(30):
                if t == 1.0:
                    cand, eta_new = new, eta + dA
                else:
                    cand, eta_new = b_a + t * step, eta + t * dA
                if first is not None:
                    cand[first] = 0.0
                f_new = self._objective_eta(eta_new, cand, lam)
                if f_new <= f + 1e-13 * abs(f):
                    break
                t *= 0.5
                first = None  # a shortened step stops short of the first zero
            else:
                stalled = True
                continue
            if first is None and f - f_new <= 1e-13 * abs(f):
                stalled = True  # as good as rounding allows: accepted if within the tolerance
            b_a, b0, eta, f = cand, b0 + t * float(delta[0]), eta_new, f_new
            if first is not None:
                keep = np.arange(active.size) != first
                active, signs, b_a = active[keep], signs[keep], b_a[keep]
                AT = AT[np.concatenate([[True], keep])]
                eta = b0 + b_a @ AT[1:]  # recomputed: no drift from the removed coordinate
        # not solved here: hand the current (descended) point to the general route
        self.beta[:] = 0.0
        self.beta[active] = b_a
        self.b0 = b0
        return None

    def _design_t(self, active):
        """``[1; Z_A']``: the intercept's row of ones, then one contiguous row per active feature."""
        AT = np.empty((active.size + 1, self.n))
        AT[0] = 1.0
        np.take(self.ZT, active, axis=0, out=AT[1:])
        return AT

    def _objective_eta(self, eta, b_a, lam):
        nll = (float(np.logaddexp(0.0, eta).sum()) - float(self.y @ eta)) / self.n
        pen = self.alpha * float(np.abs(b_a).sum())
        if self.alpha < 1:
            pen += 0.5 * (1 - self.alpha) * float(b_a @ b_a)
        return nll + lam * pen

    def _irls(self, lam, l1, l2, idx):
        """Newton-type outer loop: quadratic approximation at the current fit, solved exactly."""
        n = self.n
        ZS = self.Z[:, idx]
        ZS2 = ZS * ZS
        ZST = self.ZT[idx]
        beta = self.beta[idx].copy()
        b0 = self.b0
        full = self.beta.copy()
        f_old = self.objective(b0, full, lam)
        slack = self.tol * lam
        for _ in range(100):
            prob = logistic(b0 + ZS @ beta)
            r = self.y - prob  # = w * (working response - eta)
            if self._kkt_ok(ZST @ r / n, float(r.mean()), beta, l1, l2, slack) or self._out_of_passes():
                break
            pc = np.clip(prob, P_MIN, 1 - P_MIN)
            quad = _Quadratic(ZST, pc * (1 - pc), ZS2, l1, l2)
            beta_start, b0_start = beta.copy(), b0
            b0 = self._solve_quadratic(quad, r, beta, b0, 0.1 * slack)
            # step control: the step must lower the penalised objective (it does, barring rounding)
            full[idx] = beta
            f_new = self.objective(b0, full, lam)
            halvings = 0
            while f_new > f_old + 1e-13 * abs(f_old) and halvings < 30:
                beta = 0.5 * (beta + beta_start)
                b0 = 0.5 * (b0 + b0_start)
                full[idx] = beta
                f_new = self.objective(b0, full, lam)
                halvings += 1
            if halvings == 30:  # no descent left: as good as rounding allows
                beta, b0 = beta_start, b0_start
                break
            if f_old - f_new <= 1e-13 * abs(f_old):  # no progress left: as good as rounding allows
                break
            f_old = f_new
        self.beta[idx] = beta
        self.b0 = b0

    def _solve_quadratic(self, quad: "_Quadratic", r, beta, b0, slack):
        """Minimise the weighted least-squares approximation; updates ``beta`` and ``r`` in place.

        glmnet's scheme: a pass over every coordinate that is nonzero or would move, then passes
        over the active set until they change little, repeated until the optimality conditions
        hold. Radiomics features are strongly correlated, which makes plain coordinate descent
        crawl (glmnet's own stopping rule left KKT errors of 10-25% of lambda on the demo
        cohort); so whenever a pass leaves the nonzero set and its signs unchanged, the active
        set's problem (smooth for fixed signs) is solved exactly by one linear solve. If that
        solve would flip a sign, the step stops where the first coefficient reaches 0 (still a
        descent step) and coordinate descent goes on.
        """
        n = self.n
        l1, l2 = quad.l1, quad.l2
        shr = 1e-7 * self.null_dev  # glmnet's thresh: when active-set passes stop paying off
        q_old = math.inf
        while not self._out_of_passes():
            g = quad.ZST @ r / n
            if self._kkt_ok(g, float(r.sum()) / n, beta, l1, l2, slack):
                break
            # the quadratic's value: with r = w (z - eta), sum w (z - eta)^2 = sum r^2 / w
            q = 0.5 * float(r @ (r / quad.w)) / n + l1 * float(np.abs(beta).sum()) + 0.5 * l2 * float(beta @ beta)
            if q >= q_old - 1e-13 * abs(q_old):
                break  # no progress left: optimal as far as rounding (and conditioning) allow
            q_old = q
            candidates = np.flatnonzero((beta != 0) | (np.abs(g) > l1))
            dlx, b0, solved = self._pass_then_solve(quad, candidates, r, beta, b0)
            if solved and not np.any((beta == 0) & (np.abs(quad.ZST @ r / n) > l1 + slack)):
                # exact on the active set (as exact as its conditioning allows) and no other
                # coefficient moves: this quadratic is done
                break
            while not solved and dlx >= shr and not self._out_of_passes():  # active-set iteration
                dlx, b0, solved = self._pass_then_solve(quad, np.flatnonzero(beta), r, beta, b0)
        return b0

    def _pass_then_solve(self, quad, order, r, beta, b0):
        """One cyclic pass; if it left the nonzero set and its signs unchanged, the exact step."""
        before = np.flatnonzero(beta)
        signs = np.sign(beta[before])
        dlx, b0 = self._pass(quad, order, r, beta, b0)
        solved = False
        if before.size and np.array_equal(np.flatnonzero(beta), before) \
                and np.array_equal(np.sign(beta[before]), signs):
            solved, b0 = self._active_set_step(quad, before, r, beta, b0)
        return dlx, b0, solved

    def _active_set_step(self, quad, active, r, beta, b0):
        """Exact minimiser of the quadratic over the intercept and ``active`` with their signs
        fixed: ``(M + l2 D) delta = [1 Z_A]' r / n - [0, l1 s + l2 beta_A]`` with
        ``M = [1 Z_A]' W [1 Z_A] / n``. A step that would flip a sign stops where the first
        coefficient reaches 0 (the objective falls all the way there); that coefficient leaves
        the set and the smaller system is solved again. Updates ``beta`` and ``r`` in place;
        returns (True if it ended at the exact minimiser for the remaining set, intercept)."""
        n = self.n
        l1, l2 = quad.l1, quad.l2
        M, A1 = quad.gram(active)
        M = M.copy()
        M[1:, 1:] += l2 * np.eye(active.size)
        rows = np.arange(active.size + 1)  # 0 = intercept, then the active coefficients
        while rows.size > 1:
            cols = active[rows[1:] - 1]
            b_a = beta[cols]
            rhs = A1[rows] @ r / n
            rhs[1:] -= l1 * np.sign(b_a) + l2 * b_a
            Msub = M[np.ix_(rows, rows)]
            delta = _solve_or_none(Msub, rhs)
            if delta is None:
                # collinear active features (pyradiomics has exact ones, e.g. Range = Maximum -
                # Minimum): along a null direction of M only the penalty changes, so move the
                # way it falls until a coefficient reaches 0
                delta = _penalty_descent_direction(Msub, b_a, l1, l2)
                if delta is None:
                    return False, b0
                delta = delta * _distance_to_first_zero(b_a, delta[1:]) * 2.0
            new = b_a + delta[1:]
            crossing = np.sign(new) != np.sign(b_a)
            t, first = 1.0, None
            if crossing.any():
                ratios = np.full(b_a.size, np.inf)
                ratios[crossing] = b_a[crossing] / (b_a[crossing] - new[crossing])
                first = int(np.argmin(ratios))
                t = float(ratios[first])
            step = t * delta
            new = b_a + step[1:]
            if first is not None:
                new[first] = 0.0
            beta[cols] = new
            r -= (step @ A1[rows]) * quad.w
            b0 += float(step[0])
            if first is None:
                return True, b0
            rows = np.delete(rows, first + 1)
        return False, b0

    def _pass(self, quad, order, r, beta, b0):
        """One cyclic coordinate-descent pass over ``order``, then the intercept."""
        n = self.n
        ZST, WZT, xv, l1, l2 = quad.ZST, quad.WZT, quad.xv, quad.l1, quad.l2
        dlx = 0.0
        for j in order.tolist():
            bj = beta[j]
            xj = xv[j]
            u = float(ZST[j] @ r) / n + xj * bj
            au = abs(u)
            new = math.copysign(au - l1, u) / (xj + l2) if au > l1 else 0.0
            d = new - bj
            if d != 0.0:
                beta[j] = new
                r -= d * WZT[j]
                dlx = max(dlx, xj * d * d)
        d0 = float(r.sum()) / n / quad.wsum  # the unpenalised intercept
        if d0 != 0.0:
            b0 += d0
            r -= d0 * quad.w
            dlx = max(dlx, quad.wsum * d0 * d0)
        self.passes += 1
        return dlx, b0


class _Quadratic:
    """One IRLS quadratic approximation: weights, weighted features and a lazily grown Gram matrix
    ``[1 Z_S]' W [1 Z_S] / n`` of the features the exact steps have needed so far."""

    def __init__(self, ZST: np.ndarray, w: np.ndarray, ZS2: np.ndarray, l1: float, l2: float):
        self.n = w.size
        self.ZST = ZST
        self.w = w
        self.WZT = ZST * w
        self.xv = (w @ ZS2) / self.n
        self.wsum = float(w.sum()) / self.n
        self.l1, self.l2 = l1, l2
        self._pos = {}  # feature -> row in _rows / _M (row 0: the intercept)
        self._rows = np.ones((1, self.n))
        self._M = np.array([[self.wsum]])

    def gram(self, active: np.ndarray):
        """``(M, A1)`` for the intercept and ``active``: M (a+1 square) and A1 = [1; Z_A]."""
        new = [j for j in active.tolist() if j not in self._pos]
        if new:
            B = self.ZST[new]
            WB = B * self.w
            cross = WB @ self._rows.T / self.n
            own = WB @ B.T / self.n
            m = self._M.shape[0]
            M = np.empty((m + len(new), m + len(new)))
            M[:m, :m] = self._M
            M[m:, :m] = cross
            M[:m, m:] = cross.T
            M[m:, m:] = own
            self._M = M
            self._rows = np.vstack([self._rows, B])
            for k, j in enumerate(new):
                self._pos[j] = m + k
        pos = np.array([0] + [self._pos[j] for j in active.tolist()])
        return self._M[np.ix_(pos, pos)], self._rows[pos]


def logistic_elastic_net_path(X, y, lambdas, *, alpha: float = 1.0, tol: float = 1e-6,
                              max_passes: int = 100_000, dev_stop: float = 0.999,
                              dev_change_stop: float = 1e-5) -> dict:
    """Penalised logistic regression along a decreasing ``lambdas`` path (see the module text).

    ``X``: n x p array of features (any scale; standardised internally, constant columns get
    coefficient 0); ``y``: 0/1 outcomes; ``alpha``: 1 = LASSO, between 0 and 1 = elastic net.
    ``tol``: relative accuracy of the optimality conditions; ``max_passes``: glmnet's ``maxit``
    (coordinate passes over the whole path); ``dev_stop`` / ``dev_change_stop``: glmnet's ``devmax`` /
    ``fdev`` path stop (set them to 1 / 0 to fit every lambda).

    Returns ``dict(coefs, intercepts, n_fitted, dev_ratio, converged, passes)``: ``coefs``
    (len(lambdas) x p) and ``intercepts`` on X's scale, ``n_fitted`` the number of lambdas fitted
    before the path stopped (later rows repeat the last fit), ``dev_ratio`` the fraction of the
    null deviance explained at each fitted lambda, ``converged`` False if ``max_passes`` ran out.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    lambdas = np.asarray(lambdas, dtype=float)
    if not 0 < alpha <= 1:
        raise ValueError("alpha must be in (0, 1]")
    if lambdas.ndim != 1 or lambdas.size == 0 or np.any(np.diff(lambdas) > 0) or np.any(lambdas <= 0):
        raise ValueError("lambdas must be positive and decreasing")
    n, p = X.shape
    Z, mean, sd = _standardise(X)
    keep = sd > 0
    L = lambdas.size
    coefs = np.zeros((L, p))
    ybar = float(y.mean())
    intercepts = np.full(L, math.log(ybar / (1 - ybar)))
    dev_ratio = np.zeros(L)
    if not keep.any():
        return {"coefs": coefs, "intercepts": intercepts, "n_fitted": L, "dev_ratio": dev_ratio,
                "converged": True, "passes": 0}
    if alpha == 1.0:
        # identical features (common in pyradiomics, e.g. Energy and TotalEnergy at a fixed pixel
        # size) make the LASSO solution non-unique; the first of them takes the whole weight, as
        # in glmnet's cyclic order, and the objective is the same
        keep[keep] = _first_of_duplicates(Z[:, keep])
    fit = _Fit(np.ascontiguousarray(Z[:, keep]), y, alpha, tol, max_passes)
    grad = fit.ZT @ (y - ybar) / n
    lam_prev = float(np.max(np.abs(grad))) / alpha  # where the path would start: all zero
    strong = np.zeros(fit.p, dtype=bool)
    n_fitted = L
    sd_kept, mean_kept = sd[keep], mean[keep]
    before = None  # (lambda, intercept, coefficients) of the fit before the last one
    for k, lam in enumerate(lambdas):
        # sequential strong rule (Tibshirani et al. 2012); once strong, a feature stays strong
        strong |= np.abs(grad) >= alpha * (2 * lam - lam_prev)
        last = (lam_prev, fit.b0, fit.beta.copy())
        if k >= 2 and before[0] > lam_prev:
            fit.extrapolate(before[1], before[2], math.log(lam / lam_prev) / math.log(lam_prev / before[0]))
        grad = fit.solve(lam, strong)
        before = last
        lam_prev = lam
        beta_k = fit.beta / sd_kept
        coefs[k, keep] = beta_k
        intercepts[k] = fit.b0 - float(mean_kept @ beta_k)
        dev = float(binomial_deviance(y, fit.prob))   # of the probabilities the solver ended with
        dev_ratio[k] = 1 - dev / fit.null_dev
        if not fit.converged:
            n_fitted = k + 1
            break
        if k + 1 >= min(MIN_LAMBDAS_BEFORE_STOP, L) and (
                dev_ratio[k] >= dev_stop or (k > 0 and dev_ratio[k] - dev_ratio[k - 1] < dev_change_stop)):
            n_fitted = k + 1
            break
    coefs[n_fitted:] = coefs[n_fitted - 1]
    intercepts[n_fitted:] = intercepts[n_fitted - 1]
    return {"coefs": coefs, "intercepts": intercepts, "n_fitted": n_fitted, "dev_ratio": dev_ratio[:n_fitted],
            "converged": fit.converged, "passes": fit.passes}
