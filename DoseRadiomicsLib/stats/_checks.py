"""Input checks shared by the statistical primitives.

Each check raises :class:`~DoseRadiomicsLib.errors.DataError` with a message that says what is
wrong with the cohort's data and what to do about it, so a cohort run never ends in a bare
numpy traceback.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError


def as_vector(values, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D float array of finite numbers, or raise DataError."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be numbers",
                        hint=f"convert {name} to numeric values (no text or empty cells)") from None
    if arr.ndim == 2 and 1 in arr.shape:  # a single DataFrame column or row vector
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise DataError(f"{name} must be a single column of values, got shape {arr.shape}",
                        hint=f"pass one value per patient for {name}")
    if arr.size == 0:
        raise DataError(f"{name} is empty", hint="the analysis needs at least one patient")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DataError(f"{name} has {int(bad.sum())} missing or infinite value(s) "
                        f"(first at position {int(np.argmax(bad))})",
                        hint=f"remove those patients or impute {name} before the analysis")
    return arr


def as_binary(y, name: str = "outcome", *, min_per_class: int = 1) -> np.ndarray:
    """Return a binary outcome as an int array of 0/1 with both classes present.

    Booleans and the numbers 0/1 are accepted; anything else raises DataError.
    """
    arr = as_vector(y, name)
    values = set(np.unique(arr).tolist())
    if not values <= {0.0, 1.0}:
        shown = sorted(values)[:5]
        raise DataError(f"{name} must be coded 0/1, found values {shown}",
                        hint=f"recode {name} as 1 = event (e.g. resistant) and 0 = no event")
    out = arr.astype(int)
    n1 = int(out.sum())
    n0 = out.size - n1
    if n0 < max(1, min_per_class) or n1 < max(1, min_per_class):
        raise DataError(f"{name} has {n1} patient(s) with 1 and {n0} with 0; the analysis needs both "
                        f"classes" + (f" with at least {min_per_class} each" if min_per_class > 1 else ""),
                        hint="add patients of the missing class or check the outcome coding")
    return out


def same_length(**arrays) -> int:
    """Raise DataError unless every array has the same length; return that length."""
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise DataError(f"inputs have different numbers of patients ({described})",
                        hint="pass one value per patient, in the same patient order, for every input")
    return next(iter(lengths.values()))


def as_probability(p, name: str = "predicted probability") -> np.ndarray:
    """Return probabilities as a finite float array within [0, 1], or raise DataError."""
    arr = as_vector(p, name)
    if (arr < 0).any() or (arr > 1).any():
        raise DataError(f"{name} must lie between 0 and 1 (found {arr.min():g} to {arr.max():g})",
                        hint="pass model probabilities, not scores or linear predictors")
    return arr


def as_frame(X, name: str = "features") -> pd.DataFrame:
    """Return X as a DataFrame of finite floats with unique string column names, or raise DataError."""
    if not isinstance(X, pd.DataFrame):
        raise DataError(f"{name} must be a table (pandas DataFrame) with one column per variable",
                        hint="wrap the array in pandas.DataFrame(..., columns=names)")
    if X.shape[1] == 0:
        raise DataError(f"{name} has no columns", hint="pass at least one variable")
    if X.shape[0] == 0:
        raise DataError(f"{name} has no rows", hint="the analysis needs at least one patient")
    if X.columns.duplicated().any():
        dup = X.columns[X.columns.duplicated()].tolist()[:5]
        raise DataError(f"{name} has duplicated column names {dup}", hint="make every column name unique")
    # by dtype, not column by column (thousands of feature columns)
    non_numeric = [c for c, dt in zip(X.columns, X.dtypes) if not (pd.api.types.is_numeric_dtype(dt)
                                                                   or pd.api.types.is_bool_dtype(dt))]
    if non_numeric:
        raise DataError(f"{name} has non-numeric column(s) {non_numeric[:5]}",
                        hint="encode categories as numbers (e.g. 0/1 indicator columns) before the analysis")
    values = X.to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        cols = X.columns[bad.any(axis=0)].tolist()
        raise DataError(f"{name} has {int(bad.sum())} missing or infinite value(s) in column(s) {cols[:5]}",
                        hint="remove those patients or impute the values before the analysis")
    return pd.DataFrame(values, index=X.index, columns=[str(c) for c in X.columns])
