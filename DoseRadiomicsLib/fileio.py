"""Plain files written safely: JSON-ready values, canonical JSON for hashes, atomic writes.

Every file a command writes (records, model files, reports, CSV, JSON, PNG, images) goes through
:func:`atomic_write_files` (or :func:`atomic_output_path` for writers that need a file name), so
that NaN never reaches a JSON file (it is not JSON), hashes are computed on one canonical text,
and a reader never sees half a file: the bytes go to a temporary file in the same folder, are
flushed and fsync'ed, and only then renamed over the target, so a kill, a full disk or a
read-only folder leaves either the old file or the new one. A failure is an
:class:`~DoseRadiomicsLib.errors.OutputError` naming the file, the system's reason (errno text)
and what to do. :func:`check_output_file` and :func:`check_output_folder` find an unwritable
output before a command's long work.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import OutputError


def jsonable(obj):
    """Plain JSON types from numpy/pandas objects; NaN and infinities become None."""
    kind = type(obj)
    if kind is float:      # the common case first: a patient file holds thousands of feature values
        return obj if math.isfinite(obj) else None
    if kind is str:
        return obj
    if kind is list and all(type(v) is float for v in obj):
        return [v if math.isfinite(v) else None for v in obj]
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



# ----------------------------------------------------------------------------- CSV cells

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe_cell(cell) -> str:
    """A CSV cell a spreadsheet will not run as a formula: text starting with = + - @ (or a tab or
    carriage return) gets a leading ``'``, as spreadsheets themselves mark text. Numbers (``-1.5``,
    ``-inf``) are left as they are: a spreadsheet reads them as numbers. :func:`csv_cell_value` undoes
    it when the project reads its own CSVs back."""
    text = "" if cell is None else str(cell)
    if text[:1] in _FORMULA_START:
        try:
            float(text)
            return text
        except ValueError:
            return "'" + text
    return text


def csv_cell_value(text: str) -> str:
    """The value :func:`csv_safe_cell` wrote (its leading ``'`` removed)."""
    return text[1:] if text[:1] == "'" and text[1:2] in _FORMULA_START else text


def csv_safe_frame(df):
    """A copy of ``df`` whose text cells (and text index) are :func:`csv_safe_cell`'d, for pandas'
    ``to_csv``."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = [csv_safe_cell(v) if isinstance(v, str) else v for v in out[c]]
    if out.index.dtype == object:
        out.index = [csv_safe_cell(v) if isinstance(v, str) else v for v in out.index]
        out.index.name = df.index.name
    return out


# ----------------------------------------------------------------------------- atomic writes

#: The one call that puts bytes on disk (tests inject ENOSPC here).
_write = os.write
#: The rename that puts a finished temporary file of a group in place (tests inject failures here).
_replace = os.replace

_HINTS = {
    errno.ENOSPC: "free space on that disk, or write to another disk",
    errno.EDQUOT: "free space within your disk quota, or write to another disk",
    errno.EACCES: "choose a folder you may write to, or change its permissions",
    errno.EPERM: "choose a folder you may write to, or change its permissions",
    errno.EROFS: "the filesystem is mounted read-only: choose a folder on another one",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder: give a file name",
    errno.ENAMETOOLONG: "shorten the file or folder name",
    errno.EEXIST: "a file is in the way: choose another path",
}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()   # what open(path, "w") would give (mkstemp's 0600 would not)


def output_error(exc: OSError, path, what: str = "cannot be written") -> OutputError:
    """An OutputError for ``exc`` on ``path``: the errno text and what to do, no traceback."""
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return OutputError(f"{what}: {reason}", path=path,
                       hint=_HINTS.get(exc.errno, "choose another output path"))


def _oserror(code: int, path) -> OSError:
    return OSError(code, os.strerror(code), str(path))


def ensure_folder(folder) -> Path:
    """Create ``folder`` (and its parents) if needed; an OutputError if it cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise output_error(_oserror(errno.ENOTDIR, folder), folder, "is a file, not a folder") from None
    except OSError as exc:
        raise output_error(exc, folder, "the folder cannot be created") from None
    return folder


def _temp_beside(path: Path, suffix: str = "") -> tuple:
    """(fd, temporary path) in ``path``'s folder; a short name, so a long target name fails at the
    rename (leaving nothing) rather than at the temporary file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.", suffix=".tmp" + suffix)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, _FILE_MODE)
    return fd, Path(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make the renames durable (POSIX); a platform without directory fds simply skips it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _backup(path: Path) -> Path:
    """A second name for ``path``'s current file, beside it (a hard link; a copy where the
    filesystem has none), so that a group can put it back. Ends in .tmp: a leftover is swept away
    as a temporary."""
    import shutil
    import uuid

    backup = path.parent / f".{path.name[:32]}.{uuid.uuid4().hex[:12]}.bak.tmp"
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def atomic_write_files(files: dict) -> list:
    """Write every ``path -> bytes or str`` of ``files`` atomically, as one group: afterwards every
    file is new, or every file is as it was.

    All temporary files are written and fsync'ed first; only when every one is complete are they
    renamed over their targets, in the order given, each previous file kept under a second name
    until the last rename; if a rename fails, the ones already done are undone. A value of ``None``
    removes that file as part of the group (an output this run does not write must not survive
    beside the new ones). Put the file that records the others last: a kill between two renames
    (microseconds) then leaves the previous record. Text is UTF-8. Returns the paths written.
    Raises :class:`OutputError` naming the file that failed.
    """
    staged = []    # (temporary path or None to remove, target)
    done = []      # (previous file's backup or None, target) for the renames made
    backups = []
    current = None
    try:
        for path, data in files.items():
            current = path = Path(path)
            ensure_folder(path.parent)
            if path.is_dir():
                raise output_error(_oserror(errno.EISDIR, path), path)
            if data is None:
                staged.append((None, path))
                continue
            if isinstance(data, str):
                data = data.encode("utf-8")
            fd, tmp = _temp_beside(path)
            staged.append((tmp, path))
            try:
                view = memoryview(data)
                while view:
                    view = view[_write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        try:
            for tmp, path in staged:
                current = path
                backup = _backup(path) if os.path.lexists(path) and len(staged) > 1 else None
                if backup is not None:
                    backups.append(backup)
                if tmp is not None:
                    _replace(tmp, path)
                elif os.path.lexists(path):
                    os.unlink(path)
                done.append((backup, path))
        except BaseException:
            for backup, path in reversed(done):    # undo: every previous file back in place
                try:
                    if backup is not None:
                        os.replace(backup, path)
                    else:
                        path.unlink(missing_ok=True)
                except OSError:
                    pass
            raise
        for folder in {p.parent for _, p in staged}:
            _fsync_folder(folder)
    except OSError as exc:
        raise output_error(exc, current) from None
    finally:
        for leftover in [t for t, _ in staged if t is not None] + backups:
            if leftover.exists():
                leftover.unlink()
    return [p for t, p in staged if t is not None]


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write_files`)."""
    return atomic_write_files({path: data})[0]


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write_files`)."""
    return atomic_write_files({path: text})[0]


def _diagnose(folder: Path) -> OSError | None:
    """The OSError a one-byte write in ``folder`` meets now (e.g. ENOSPC), or None."""
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".doseradiomics-probe-", suffix=".tmp")
    except OSError as exc:
        return exc
    try:
        _write(fd, b"\0")
        os.fsync(fd)
        return None
    except OSError as exc:
        return exc
    finally:
        os.close(fd)
        os.unlink(tmp)


@contextmanager
def atomic_output_path(path):
    """A temporary path beside ``path`` (ending in ``path``'s suffixes, so that writers choosing a
    format by the extension, such as SimpleITK's, choose the same) for writers that need a file
    name; on success it is fsync'ed and renamed over ``path``, on failure removed.

    A writer that reports failure without an errno (ITK raises RuntimeError) is diagnosed with a
    one-byte probe in the same folder, so the error still says why (e.g. no space left).
    """
    path = Path(path)
    ensure_folder(path.parent)
    if path.is_dir():
        raise output_error(_oserror(errno.EISDIR, path), path)
    try:
        fd, tmp = _temp_beside(path, "".join(path.suffixes[-2:]))
        os.close(fd)
    except OSError as exc:
        raise output_error(exc, path) from None
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as exc:
        raise output_error(exc, path) from None
    except RuntimeError as exc:
        probe = _diagnose(path.parent)
        if probe is not None:
            raise output_error(probe, path) from None
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"cannot be written: {first}", path=path,
                          hint="check the disk and the folder, or choose another path") from None
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------- checks before work

def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _check_path(path, want_folder: bool) -> Path:
    path = Path(os.path.abspath(path))
    base = _nearest_existing(path)
    if not base.is_dir():     # an existing part of the path is a file
        if base == path:
            if want_folder:
                raise output_error(_oserror(errno.ENOTDIR, path), path, "exists and is a file, not a folder")
        else:
            raise output_error(_oserror(errno.ENOTDIR, path), path,
                               f"cannot be created under {base}, which is a file")
    if base == path and not want_folder and path.is_dir():
        raise output_error(_oserror(errno.EISDIR, path), path, "is a folder")
    limit = _name_max(base if base.is_dir() else base.parent)
    for part in path.relative_to(base).parts if base != path else ():
        if len(os.fsencode(part)) > limit:
            raise output_error(_oserror(errno.ENAMETOOLONG, path), path,
                               f"a name of {len(os.fsencode(part))} bytes is longer than this filesystem's "
                               f"limit of {limit}")
    folder = base if base.is_dir() else base.parent
    problem = _diagnose(folder)
    if problem is not None:
        raise output_error(problem, path)
    return path


def check_output_file(path) -> Path:
    """Before long work: ``path`` can be written as a file (no folder or file in the way, names
    within the filesystem's limit, its nearest existing folder writable and not full). Creates
    nothing; raises :class:`OutputError`."""
    return _check_path(path, want_folder=False)


def check_output_folder(path) -> Path:
    """Before long work: ``path`` can be (or is) a folder that files can be written into."""
    return _check_path(path, want_folder=True)
