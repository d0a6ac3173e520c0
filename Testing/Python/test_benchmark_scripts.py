"""The benchmark scripts measure what they claim: one BLAS/OpenMP thread and this checkout's code.

A script that imports numpy before ``_common`` gets OpenBLAS's default thread pool (``_common`` sets
the thread variables, which OpenBLAS reads once, when numpy loads), and its CPU figures then count
idle-spinning threads: the engine-parity run on pt_1 measured 20.9 CPU-s unpinned against 9.5 pinned.
A child ``python -m DoseRadiomicsLib.cli`` without ``checkout_env()`` imports whichever library the
interpreter finds first, not the checkout being benchmarked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "_common.py")
HEAVY = {"numpy", "scipy", "pandas", "SimpleITK", "radiomics", "DoseRadiomicsLib"}


def _top_imports(tree):
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module.split(".")[0]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_common_comes_before_any_numerical_import(script):
    modules = list(_top_imports(ast.parse(script.read_text(encoding="utf-8"))))
    common = [line for line, m in modules if m == "_common"]
    heavy = [(line, m) for line, m in modules if m in HEAVY]
    assert common, f"{script.name} does not import _common"
    assert not heavy or common[0] < heavy[0][0], \
        f"{script.name} imports {heavy[0][1]} (line {heavy[0][0]}) before _common (line {common[0]})"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_child_processes_of_the_command_get_the_checkouts_path(script):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and getattr(node.func.value, "id", "") == "subprocess" \
                and node.func.attr in ("run", "Popen", "call", "check_call", "check_output"):
            env = [k.value for k in node.keywords if k.arg == "env"]
            # env=checkout_env(...), or a variable the script set from it
            made = env and (isinstance(env[0], ast.Call) and getattr(env[0].func, "id", "") == "checkout_env"
                            or isinstance(env[0], ast.Name) and _assigned_from_checkout_env(tree, env[0].id))
            assert made, f"{script.name} line {node.lineno}: a child process without env=checkout_env()"


def _assigned_from_checkout_env(tree, name: str) -> bool:
    """``name = checkout_env(...)``, or an expression that calls it (another checkout's explicit
    PYTHONPATH in one branch, as bench_cohort_commits.py's old commit)."""
    return any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == name for t in n.targets)
               and any(isinstance(c, ast.Call) and getattr(c.func, "id", "") == "checkout_env"
                       for c in ast.walk(n.value))
               for n in ast.walk(tree))
