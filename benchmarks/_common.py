"""Shared by the benchmark scripts: pinned threads, synthetic cohorts, CPU clocks, README tables.

Every script measures process CPU time (``time.process_time`` / ``resource.getrusage``) as well as
wall time: the CPU figures hold on a machine busy with other work, the wall figures only on a quiet
one, so each table states the load average it was measured under.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
    os.environ.setdefault(_var, "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
# the public test data (CI and developers have ../shared beside the repository)
SHARED_DATA = Path(os.environ.get("DOSERADIOMICS_SHARED_DATA", REPO.parent / "shared" / "data"))
README = HERE / "README.md"
WORKDIR = Path(os.environ.get("DOSERADIOMICS_BENCH_DIR", "/tmp/doseradiomics-bench"))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def synth_cohort(n: int, seed: int = 2025) -> Path:
    """The manifest of ``doseradiomics synth --n n --seed seed``, generated once under WORKDIR."""
    from DoseRadiomicsLib import synth

    folder = WORKDIR / f"synth_{n}_{seed}"
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        synth.generate_cohort(n, seed=seed, out_dir=folder)
    return manifest


def checkout_env(**extra) -> dict:
    """The environment for a child process (``python -m DoseRadiomicsLib.cli ...``) that must import
    this checkout's library, not whichever one the interpreter has installed (e.g. /work/main's)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, **extra)


def cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds of this process (and, with ``children``, of its waited-for children)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def load_note() -> str:
    """'load 1.2/1.0/0.9 on 2 CPUs' (1, 5 and 15 minute load averages)."""
    a, b, c = os.getloadavg()
    return f"load {a:.1f}/{b:.1f}/{c:.1f} on {os.cpu_count()} CPUs"


def write_readme_section(name: str, markdown: str) -> None:
    """Replace the text between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in benchmarks/README.md."""
    text = README.read_text(encoding="utf-8")
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text, encoding="utf-8")


def publish(name: str, results, markdown: str, note: str) -> None:
    """Print a benchmark's table, keep its figures in results/<name>.json and put the table and its
    note (command, date, load) between the ``name`` markers of benchmarks/README.md."""
    print(markdown)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name.replace('-', '_')}.json").write_text(json.dumps(results, indent=2))
    write_readme_section(name, markdown + "\n\n" + note)


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M")
