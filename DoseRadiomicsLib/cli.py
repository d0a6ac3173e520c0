"""The ``doseradiomics`` command.

Each subcommand lives with the code it drives: a module listed in ``COMMAND_MODULES`` exposes
``register_cli(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import re
import signal
import sys
import threading

from . import __version__
from .errors import DoseRadiomicsError

# In the order ``--help`` lists them: one patient, then cohort work, then models.
COMMAND_MODULES = [
    "DoseRadiomicsLib.pipeline",    # extract
    "DoseRadiomicsLib.dosemap",     # extract-dosemap
    "DoseRadiomicsLib.manifest_builder",  # manifest
    "DoseRadiomicsLib.synth",       # synth
    "DoseRadiomicsLib.cohort",      # cohort-extract
    "DoseRadiomicsLib.robustness",  # robustness
    "DoseRadiomicsLib.training",    # train
    "DoseRadiomicsLib.compare",     # compare (2D vs 2.5D vs 3D sections)
    "DoseRadiomicsLib.prediction",  # predict
    "DoseRadiomicsLib.report",      # report
    "DoseRadiomicsLib.validation",  # validate
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doseradiomics",
        description="2D radiomics of the planning CT and 2D dosiomics of the RT dose on the largest "
                    "tumour cross-section (Zhang et al. 2025), from one patient to a cohort and a model.",
    )
    parser.add_argument("--version", action="version", version=f"DoseRadiomics {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command not built yet in this checkout
                continue
            raise
        module.register_cli(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (pools stopped, lock released)."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except DoseRadiomicsError as exc:
        # one line, whatever a library's message held (pydicom's list their plugins line by line)
        one_line = re.sub(r"[ \t]*[\r\n]+[ \t]*", " ", str(exc).strip())
        print(f"doseradiomics {args.command}: error: {one_line}", file=sys.stderr)
        return 1
    except Terminated:
        print(f"doseradiomics {args.command}: terminated (SIGTERM); a rerun resumes", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"doseradiomics {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
