"""Every command survives its outputs failing (issue 12, Build 1).

For each command that writes (extract, extract-dosemap, cohort-extract, train, report, predict --out,
synth) and each way an output can fail:

- ``under-a-file``: ``--out`` is a path under an existing file;
- ``wrong-type``: ``--out`` names a file where a folder is written, or a folder where a file is;
- ``name-too-long``: a name longer than the filesystem allows (255 bytes);
- ``read-only``: the output folder is on a read-only filesystem (a tmpfs remounted read-only when we
  are root; a folder without write permission otherwise);
- ``full-disk``: the output is on a tmpfs with no space left (root only: mount needs it);
- ``enospc-at-write``: the disk fills while the outputs are written, after the command's work (an
  ENOSPC injected at the write layer, half-way through a file);

the command exits 1 with exactly one error line (``doseradiomics CMD: error: ...``) naming the file
and the system's reason, no traceback, and the output location holds exactly what it held before
(the previous outputs byte for byte, no temporary or half-written file). ``train`` refuses an
unwritable ``--out`` in under a second, before it reads or fits anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from DoseRadiomicsLib import cli, fileio
from DoseRadiomicsLib.errors import OutputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "BadInputs"))
from make_corpus import write_tiny_cohort, write_tiny_patient  # noqa: E402

from test_training import synthetic_cohort  # noqa: E402

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m"):
    """A small tmpfs at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the filesystem of ``folder`` until ENOSPC, then free ``leave`` bytes."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    block = b"\xff" * 4096
    try:
        while True:
            os.write(fd, block)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_error(rc: int, err: str, command: str, *needles: str) -> str:
    assert rc == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"doseradiomics {command}: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- the commands

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Inputs for every command: a tiny patient, a 2-patient cohort, a features table, a model."""
    from DoseRadiomicsLib.modelfile import save_model
    from DoseRadiomicsLib.training import train_models

    d = tmp_path_factory.mktemp("inputs")
    patient = write_tiny_patient(d / "patient", seed=3)
    manifest = write_tiny_cohort(d / "cohort", 2, seed=5)
    features, man, truth = synthetic_cohort(n=100, n_noise=8, seed=4)
    df = man.df.copy()
    for col in ("ct", "dose", "gtv"):
        df[col] = [f"images/{p}/{col}.nrrd" for p in df.index]
    df.to_csv(d / "manifest.csv", index_label="patient_id")
    features.to_csv(d / "features.csv", index=False)
    save_model(train_models(features, man, seed=1), d / "model.json")
    # a picture for extract-dosemap: its outputs are refused before the picture is read
    (d / "picture.png").write_bytes(b"not read")
    return {"patient": patient, "cohort": manifest, "features": d / "features.csv",
            "manifest": d / "manifest.csv", "model": d / "model.json", "picture": d / "picture.png"}


# command -> (folder or file output, argv without --out, names of the outputs it writes)
def command_argv(name: str, i: dict) -> tuple:
    p = i["patient"]
    return {
        "extract": ("folder", ["extract", "--ct", str(p["ct"]), "--dose", str(p["dose"]), "--gtv", str(p["gtv"]),
                               "--gtv-label", "1", "--quiet"], ["features.csv", "extraction.json", "slice.png"]),
        "extract-dosemap": ("folder", ["extract-dosemap", "--ct", str(p["ct"]), "--gtv", str(p["gtv"]),
                                       "--dose-map", str(i["picture"]), "--intensity", "--dose-range", "0", "70",
                                       "--quiet"], ["features.csv", "extraction.json", "slice.png"]),
        "cohort-extract": ("folder", ["cohort-extract", "--manifest", str(i["cohort"]), "--workers", "1",
                                      "--quiet"], ["features.csv", "failures.csv", "cohort.json"]),
        "train": ("file", ["train", "--features", str(i["features"]), "--manifest", str(i["manifest"]),
                           "--seed", "2"], []),
        "report": ("file", ["report", "--model", str(i["model"])], []),
        "predict": ("file", ["predict", "--model", str(i["model"]), "--features", str(i["features"]),
                             "--patient", "P001"], []),
        "synth": ("folder", ["synth", "--n", "2", "--seed", "7", "--force"], ["manifest.csv", "ground_truth.csv", "README.md"]),
    }[name]


COMMANDS = ["extract", "extract-dosemap", "cohort-extract", "train", "report", "predict", "synth"]
# the commands whose whole work is cheap enough to run to the write in every test
WRITE_TIME = ["extract", "cohort-extract", "train", "report", "predict", "synth"]


def seed_previous(where: Path, kind: str, names: list) -> Path:
    """Put a previous run's outputs at ``where`` (a folder of named files, or one file)."""
    if kind == "folder":
        where.mkdir(parents=True, exist_ok=True)
        for n in names:
            (where / n).write_text(f"previous {n}\n")
    else:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text("previous output\n")
    return where


def run(argv, capsys) -> tuple:
    capsys.readouterr()
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


# ----------------------------------------------------------------------------- the cases

@pytest.mark.parametrize("command", COMMANDS)
def test_out_under_a_file(command, inputs, tmp_path, capsys):
    kind, argv, _ = command_argv(command, inputs)
    (tmp_path / "a-file").write_text("keep me\n")
    before = snapshot(tmp_path)
    rc, err = run(argv + ["--out", str(tmp_path / "a-file" / "out")], capsys)
    assert_one_error(rc, err, command, str(tmp_path / "a-file"), "Not a directory")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_out_of_the_wrong_type(command, inputs, tmp_path, capsys):
    kind, argv, _ = command_argv(command, inputs)
    target = tmp_path / "target"
    if kind == "folder":       # a file where the command writes a folder
        target.write_text("previous file\n")
        reason = "Not a directory"
    else:                      # a folder where the command writes a file
        (target / "inside").mkdir(parents=True)
        (target / "inside" / "x.txt").write_text("kept\n")
        reason = "Is a directory"
    before = snapshot(tmp_path)
    rc, err = run(argv + ["--out", str(target)], capsys)
    assert_one_error(rc, err, command, str(target), reason)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", COMMANDS)
def test_name_too_long(command, inputs, tmp_path, capsys):
    kind, argv, _ = command_argv(command, inputs)
    (tmp_path / "previous.txt").write_text("kept\n")
    before = snapshot(tmp_path)
    rc, err = run(argv + ["--out", str(tmp_path / ("n" * 300) / "out")], capsys)
    assert_one_error(rc, err, command, "File name too long", "300 bytes")
    assert snapshot(tmp_path) == before
    assert sorted(os.listdir(tmp_path)) == ["previous.txt"]


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder whose filesystem refuses writes, and a function to make it so after seeding it."""
    if IS_ROOT:   # root ignores permissions: a tmpfs remounted read-only
        with tmpfs(tmp_path / "ro", "1m") as d:
            def freeze():
                subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
            yield d, freeze, "Read-only file system"
    else:
        d = tmp_path / "ro"
        d.mkdir()

        def freeze():
            for p in sorted(d.rglob("*"), reverse=True) + [d]:
                if p.is_dir():
                    p.chmod(0o555)
        yield d, freeze, "Permission denied"
        for p in [d] + sorted(d.rglob("*")):
            if p.is_dir():
                p.chmod(0o755)


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_folder(command, inputs, read_only_folder, capsys):
    folder, freeze, reason = read_only_folder
    kind, argv, names = command_argv(command, inputs)
    target = seed_previous(folder / ("out" if kind == "folder" else "out.json"), kind, names)
    freeze()
    before = snapshot(folder)
    t0 = time.perf_counter()
    rc, err = run(argv + ["--out", str(target)], capsys)
    elapsed = time.perf_counter() - t0
    assert_one_error(rc, err, command, str(target), reason)
    assert snapshot(folder) == before
    if command == "train":   # found before the work: the train worked 11 s first
        assert elapsed < 1.0, elapsed


@pytest.mark.skipif(not IS_ROOT, reason="mounting a full tmpfs needs root")
@pytest.mark.parametrize("command", COMMANDS)
def test_full_disk(command, inputs, tmp_path, capsys):
    kind, argv, names = command_argv(command, inputs)
    with tmpfs(tmp_path / "full", "1m") as d:
        target = seed_previous(d / ("out" if kind == "folder" else "out.json"), kind, names)
        fill(d)
        before = snapshot(d)
        rc, err = run(argv + ["--out", str(target)], capsys)
        assert_one_error(rc, err, command, "No space left on device")
        assert snapshot(d) == before


@pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root")
@pytest.mark.parametrize("command", ["extract", "report"])
def test_disk_fills_while_writing_on_a_real_filesystem(command, inputs, tmp_path, capsys):
    """16 kB left: the check before the work passes, the outputs (> 16 kB) do not fit."""
    kind, argv, names = command_argv(command, inputs)
    with tmpfs(tmp_path / "almost", "2m") as d:
        target = seed_previous(d / ("out" if kind == "folder" else "report.html"), kind, names)
        fill(d, leave=16384)
        before = snapshot(d)
        rc, err = run(argv + ["--out", str(target)], capsys)
        assert_one_error(rc, err, command, str(target), "No space left on device")
        assert snapshot(d) == before


@pytest.mark.parametrize("command", WRITE_TIME)
def test_disk_full_while_writing(command, inputs, tmp_path, capsys, monkeypatch):
    kind, argv, names = command_argv(command, inputs)
    target = seed_previous(tmp_path / "out" if kind == "folder" else tmp_path / "out.json", kind, names)
    before = snapshot(tmp_path)
    # the check before the work passes (its probe is a write too: let it through)
    monkeypatch.setattr(fileio, "_diagnose", lambda folder: None)
    real = fileio._write
    state = {"n": 0}

    def write(fd, data):
        state["n"] += 1
        if state["n"] == 1:
            return real(fd, data[: max(1, len(data) // 2)])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "_write", write)
    rc, err = run(argv + ["--out", str(target)], capsys)
    line = assert_one_error(rc, err, command, "No space left on device")
    assert state["n"] >= 2, "the command never reached the write layer"
    after = snapshot(tmp_path)
    if command == "synth":
        # the images written before the disk filled are complete files; the manifest, written
        # last, is the previous one, and nothing half-written or temporary is left
        images = {k: v for k, v in after.items() if k.startswith("out/images/")}
        after = {k: v for k, v in after.items() if k not in images}
        import SimpleITK as sitk
        for rel in images:
            sitk.ReadImage(str(tmp_path / rel))
    elif command == "cohort-extract":
        # patients/ and columns/ are the run's working folders: nothing half-written in them
        work = {k for k in after if k.startswith(("out/patients/", "out/columns/"))}
        assert not any(Path(k).name.startswith(".") for k in work)
        after = {k: v for k, v in after.items() if k not in work}
    assert after == before, line


# ----------------------------------------------------------------------------- the writer itself

def test_group_write_replaces_nothing_when_one_file_fails(tmp_path, monkeypatch):
    a, b = tmp_path / "a.csv", tmp_path / "b.json"
    a.write_text("old a")
    b.write_text("old b")
    real = fileio._write
    monkeypatch.setattr(fileio, "_write", lambda fd, data: real(fd, data) if len(data) < 100 else
                        (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OutputError) as info:
        fileio.atomic_write_files({a: "new a", b: "x" * 1000})
    assert str(b) in str(info.value) and "No space left on device" in str(info.value)
    assert info.value.hint and "space" in info.value.hint
    assert a.read_text() == "old a" and b.read_text() == "old b"
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "b.json"]


def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    f = tmp_path / "report.html"
    f.write_text("old report")

    def interrupted(fd, data):
        os.write(fd, data[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write_text(f, "<html>" + "x" * 5000)
    assert f.read_text() == "old report" and os.listdir(tmp_path) == ["report.html"]


def test_written_files_have_the_usual_permissions_and_are_complete(tmp_path):
    f = fileio.atomic_write_bytes(tmp_path / "sub" / "x.png", b"\x89PNG" * 1000)
    umask = os.umask(0)
    os.umask(umask)
    assert f.stat().st_mode & 0o777 == 0o666 & ~umask
    assert f.read_bytes() == b"\x89PNG" * 1000


@pytest.mark.skipif(not IS_ROOT, reason="mounting a tmpfs needs root")
def test_an_image_writer_without_errno_is_diagnosed(tmp_path):
    """SimpleITK raises a RuntimeError without an errno on a full disk: the error still says why."""
    import numpy as np
    import SimpleITK as sitk

    with tmpfs(tmp_path / "img", "256k") as d:
        (d / "ct.nrrd").write_text("previous")
        fill(d)
        img = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(40, 64, 64)).astype(np.float32))
        with pytest.raises(OutputError) as info:
            with fileio.atomic_output_path(d / "ct.nrrd") as tmp:
                sitk.WriteImage(img, str(tmp))
        assert "No space left on device" in str(info.value) and str(d / "ct.nrrd") in str(info.value)
        assert sorted(os.listdir(d)) == ["ct.nrrd", "filler.bin"] and (d / "ct.nrrd").read_text() == "previous"


def test_synth_into_a_non_empty_folder_needs_force(tmp_path, capsys):
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "manifest.csv").write_text("my own manifest\n")
    rc, err = run(["synth", "--n", "1", "--out", str(out)], capsys)
    assert_one_error(rc, err, "synth", "not empty", "--force")
    assert (out / "manifest.csv").read_text() == "my own manifest\n"
    assert cli.main(["synth", "--n", "1", "--out", str(out), "--force"]) == 0
    assert (out / "manifest.csv").read_text().startswith("patient_id,")


def test_the_process_prints_one_line_and_no_traceback(inputs, tmp_path):
    """The real command line, in its own process, on an unwritable --out."""
    (tmp_path / "f").write_text("x")
    done = subprocess.run([sys.executable, "-m", "DoseRadiomicsLib.cli", "report", "--model", str(inputs["model"]),
                           "--out", str(tmp_path / "f" / "report.html")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "Not a directory" in done.stderr and str(tmp_path / "f") in done.stderr


# ----------------------------------------------------------------------------- extract's outputs as one group

@pytest.fixture(scope="module")
def two_results(tmp_path_factory):
    """Two patients' extractions: the first one's outputs are on disk, the second's would replace them."""
    from DoseRadiomicsLib.pipeline import ExtractionOptions, PatientInputs, extract_patient

    d = tmp_path_factory.mktemp("group")
    results = []
    for seed in (12, 13):
        p = write_tiny_patient(d / f"p{seed}", seed=seed)
        results.append(extract_patient(PatientInputs(patient_id=f"P{seed}", ct=str(p["ct"]), dose=str(p["dose"]),
                                                     gtv=str(p["gtv"]), gtv_label=1),
                                       ExtractionOptions(config="2d")))
    return results


GROUP = ["features.csv", "feature_stability.json", "slice.png", "extraction.json"]   # the record last


def _fail_nth_file_write(n: int, real):
    """A write stub: ENOSPC when the n-th file of the group (1-based) is written, half-way through."""
    files = []     # by inode: a closed file's descriptor number is reused for the next

    def write(fd, data):
        inode = os.fstat(fd).st_ino
        if inode not in files:
            files.append(inode)
        if len(files) == n:
            real(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)
    return write


def _fail_nth_rename(n: int, real):
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == n:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)
    return replace


@pytest.mark.parametrize("failure", ["2nd file written", "3rd file written", "2nd rename", "3rd rename"])
def test_extract_outputs_are_replaced_all_together_or_not_at_all(failure, two_results, tmp_path, monkeypatch):
    from DoseRadiomicsLib.pipeline import write_patient_outputs

    old, new = two_results
    out = tmp_path / "out"
    write_patient_outputs(old, out)
    before = snapshot(out)
    assert sorted(before) == sorted(GROUP)
    n = int(failure[0])
    if failure.endswith("written"):
        monkeypatch.setattr(fileio, "_write", _fail_nth_file_write(n, fileio._write))
        reason = "No space left on device"
    else:
        monkeypatch.setattr(fileio, "_replace", _fail_nth_rename(n, fileio._replace))
        reason = "Input/output error"
    with pytest.raises(OutputError) as info:
        write_patient_outputs(new, out)
    assert reason in str(info.value) and str(out / GROUP[n - 1]) in str(info.value)
    assert snapshot(out) == before, "a mixed set of old and new outputs, or a temporary left"
    monkeypatch.undo()
    write_patient_outputs(new, out)      # and with room, the whole new set
    after = snapshot(out)
    record = json.loads(after["extraction.json"])
    assert all(after[name] != before[name] for name in GROUP)
    assert record["outputs_sha256"] == {name: hashlib.sha256(after[name]).hexdigest() for name in GROUP[:-1]}


def test_extract_without_png_removes_the_previous_picture_with_the_group(two_results, tmp_path):
    from DoseRadiomicsLib.pipeline import write_patient_outputs

    old, new = two_results
    write_patient_outputs(old, tmp_path)
    write_patient_outputs(new, tmp_path, png=False)
    assert sorted(os.listdir(tmp_path)) == ["extraction.json", "feature_stability.json", "features.csv"]
    assert json.loads((tmp_path / "extraction.json").read_text())["outputs_sha256"]["slice.png"] is None
