"""dho command line: one subcommand group per package module.

Each module in :data:`COMMANDS` defines ``add_cli(subparsers)`` that adds its
subcommands and sets ``func`` (called with the parsed args, returns an exit code).
User errors (:class:`~dho.errors.DhoError`) print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import DhoError

# command -> the module whose ``add_cli`` defines it.  Only the module of the command
# being run is imported, so ``dho split`` does not pay for torch, mlflow and pandas.
COMMANDS = {
    "train": "dho.train",
    "methods": "dho.methods",
    "data": "dho.data.cli", "split": "dho.data.cli",
    "students": "dho.models.cli", "teacher": "dho.models.cli",
    "demo": "dho.demo.cli",
    "submit": "dho.launch", "submit-cmd": "dho.launch",
    "mlflow-server": "dho.tracking", "mlflow-init": "dho.tracking", "mlflow-sync": "dho.tracking",
    "mlflow-check": "dho.tracking",
    "collect": "dho.results.cli", "tables": "dho.results.cli", "figures": "dho.results.cli",
    "rechoose": "dho.results.cli", "collect-evals": "dho.results.cli", "ood-tables": "dho.results.cli",
    "evaluate": "dho.evaluate",
}
COMMAND_MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only the commands of ``command``'s module."""
    parser = argparse.ArgumentParser(prog="dho", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES
    for modname in modules:
        importlib.import_module(modname).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # Snakemake exports OMP_NUM_THREADS=<the rule's threads>, 0 for a rule that only waits
    # (the SLURM launcher); libgomp rejects 0 with a warning when torch loads. Set it
    # before any command imports torch.
    if os.environ.get("OMP_NUM_THREADS") == "0":
        os.environ["OMP_NUM_THREADS"] = "1"
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
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
