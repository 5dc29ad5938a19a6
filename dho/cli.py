"""``dho`` command line: one subcommand group per package module.

Each module in :data:`COMMAND_MODULES` defines ``add_cli(subparsers)`` that adds its
subcommands and sets ``func`` (called with the parsed args, returns an exit code).
User errors (:class:`~dho.errors.DhoError`) print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import DhoError

COMMAND_MODULES = (
    "dho.train",          # train
    "dho.methods",        # methods
    "dho.data.cli",       # data check, split
    "dho.models.cli",     # students, teacher zeroshot|tip-adapter-f|eval
    "dho.demo.cli",       # demo data, demo teacher
    "dho.launch",         # submit
    "dho.tracking",       # mlflow-init, mlflow-sync, mlflow-check
    "dho.results.cli",    # collect, tables, figures, rechoose
    "dho.evaluate",       # evaluate
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dho", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for modname in COMMAND_MODULES:
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:  # TEMPORARY while the parts are being written
            if modname.startswith(e.name or "\0"):
                continue
            raise
        module.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DhoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
