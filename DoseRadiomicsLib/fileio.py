"""Plain files written safely: JSON-ready values, canonical JSON for hashes, atomic writes.

Every record, model file and cohort result goes through here, so that NaN never reaches a JSON
file (it is not JSON), hashes are computed on one canonical text, and a reader never sees half a
file (a killed run leaves either the old file or the new one).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def jsonable(obj):
    """Plain JSON types from numpy/pandas objects; NaN and infinities become None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "to_dict"):   # pandas DataFrame (as records) or Series
        try:
            return jsonable(obj.to_dict(orient="records"))
        except TypeError:
            return jsonable(obj.to_dict())
    return str(obj)


def canonical_json(value) -> str:
    """The one text hashes are computed on: sorted keys, no spaces, ASCII, no NaN."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path, data: bytes) -> None:
    """:func:`atomic_write_text` for bytes (pictures)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
