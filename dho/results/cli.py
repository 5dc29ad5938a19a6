"""``dho collect | tables | figures | rechoose``: runs.csv and everything derived from it."""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from typing import Iterator


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Print each warning raised inside the block as one ``warning: ...`` line on stderr."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


def _collect(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from .collect import collect_runs, find_run_dirs, read_run_dirs_file, write_runs_csv

    if args.runs_root is None and not args.run_dir and not args.run_dirs_file:
        raise ConfigError("dho collect: give --runs-root DIR, --run-dir DIR (repeatable) "
                          "or --run-dirs-file FILE")
    run_dirs = list(args.run_dir or [])
    for listing in args.run_dirs_file or []:
        run_dirs += read_run_dirs_file(listing)
    if args.runs_root is not None:
        run_dirs += find_run_dirs(args.runs_root)
    with _warnings_as_lines():
        df = collect_runs(run_dirs, args.suite)
    path = write_runs_csv(df, args.out)
    print(f"wrote {path} ({len(df)} runs)")
    return 0


def _tables(args: argparse.Namespace) -> int:
    from .collect import read_runs_csv
    from .reported import load_reported
    from .tables import write_tables

    runs = read_runs_csv(args.runs)
    for path in write_tables(runs, args.out_dir, load_reported(args.reported)):
        print(f"wrote {path}")
    return 0


def _figures(args: argparse.Namespace) -> int:
    from .collect import read_runs_csv
    from .figures import write_figures

    runs = read_runs_csv(args.runs)
    with _warnings_as_lines():
        paths = write_figures(runs, args.out_dir)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _rechoose(args: argparse.Namespace) -> int:
    from .collect import read_runs_csv
    from .rechoose import write_rechoose

    runs = read_runs_csv(args.runs)
    with _warnings_as_lines():
        paths = write_rechoose(runs, args.out, tuple(args.method) if args.method else None)
    for path in paths:
        print(f"wrote {path}")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``collect``, ``tables``, ``figures`` and ``rechoose`` to the ``dho`` command line."""
    p = sub.add_parser("collect", help="collect finished run directories into runs.csv")
    p.add_argument("--suite", required=True, help="suite name written in the 'suite' column")
    p.add_argument("--runs-root", help="folder searched recursively for run directories")
    p.add_argument("--run-dir", action="append", help="a run directory (repeatable)")
    p.add_argument("--run-dirs-file", action="append",
                   help="text file listing run directories, one per line (repeatable)")
    p.add_argument("--out", required=True, help="runs.csv to write")
    p.set_defaults(func=_collect)

    p = sub.add_parser("tables", help="comparison and summary tables (md, csv, tex) from runs.csv")
    p.add_argument("--runs", required=True, help="runs.csv written by `dho collect`")
    p.add_argument("--out-dir", required=True, help="folder for comparison.* and summary.*")
    p.add_argument("--reported", help="reported-numbers CSV (default: the packaged reported.csv)")
    p.set_defaults(func=_tables)

    p = sub.add_parser("figures", help="accuracy, (alpha, beta) and gradient-cosine figures from runs.csv")
    p.add_argument("--runs", required=True, help="runs.csv written by `dho collect`")
    p.add_argument("--out-dir", required=True, help="folder for the PNG figures")
    p.set_defaults(func=_figures)

    p = sub.add_parser("rechoose", help="re-choose the DHO (alpha, beta) rule on saved logits")
    p.add_argument("--runs", required=True, help="runs.csv written by `dho collect`")
    p.add_argument("--out", required=True, help="CSV to write (a Markdown table goes next to it, .md)")
    p.add_argument("--method", action="append",
                   help="method to include (repeatable; default: the registered two-head methods)")
    p.set_defaults(func=_rechoose)
