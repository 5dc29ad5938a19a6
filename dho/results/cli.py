"""``dho collect | tables | figures | rechoose``: runs.csv and everything derived from it;
``dho paper-table``: a paper table in the paper's layout;
``dho collect-evals | ood-tables``: evaluation records (``dho evaluate``) -> evals.csv -> OOD table."""

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
    from ..io import read_path_list
    from .collect import collect_runs, find_run_dirs, write_runs_csv

    if args.runs_root is None and not args.run_dir and not args.run_dirs_file:
        raise ConfigError("dho collect: give --runs-root DIR, --run-dir DIR (repeatable) "
                          "or --run-dirs-file FILE")
    run_dirs = list(args.run_dir or [])
    for listing in args.run_dirs_file or []:
        run_dirs += read_path_list(listing, "run-dir list file")
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


def _collect_evals(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..io import read_path_list
    from .evals import collect_evals, find_eval_files, write_evals_csv

    if args.evals_root is None and not args.eval and not args.evals_file:
        raise ConfigError("dho collect-evals: give --evals-root DIR, --eval FILE (repeatable) or --evals-file LIST")
    files = list(args.eval or [])
    for listing in args.evals_file or []:
        files += read_path_list(listing, "evaluation list file")
    if args.evals_root is not None:
        files += find_eval_files(args.evals_root)
    with _warnings_as_lines():
        df = collect_evals(files, args.suite)
    path = write_evals_csv(df, args.out)
    print(f"wrote {path} ({len(df)} evaluations)")
    return 0


def _collect_linear_eval(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..io import read_path_list
    from .linear import collect_linear, write_linear_csv

    files = list(args.record or [])
    for listing in args.records_file or []:
        files += read_path_list(listing, "linear-evaluation list file")
    if not files:
        raise ConfigError("dho collect-linear-eval: give --record FILE (repeatable) or --records-file LIST")
    df = collect_linear(files, args.suite)
    path = write_linear_csv(df, args.out)
    print(f"wrote {path} ({len(df)} linear evaluations)")
    return 0


def _ood_tables(args: argparse.Namespace) -> int:
    from .evals import read_evals_csv, write_ood_tables

    for path in write_ood_tables(read_evals_csv(args.evals), args.out_dir, args.name):
        print(f"wrote {path}")
    return 0


def _readme_results(args: argparse.Namespace) -> int:
    from .readme import write_readme_results

    figures = None if args.no_figures else (args.figures_dir or f"docs/{args.suite}")
    for path in write_readme_results(args.readme, args.results, args.suite, figures):
        print(f"wrote {path}")
    return 0


def _paper_table(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..errors import ConfigError
    from .collect import read_runs_csv
    from .evals import read_evals_csv
    from .linear import read_linear_csv
    from .paper import evals_as_runs, get_layout, write_paper_table
    from .reported import load_reported

    layout = get_layout(args.layout)
    frames = [read_runs_csv(p) for p in args.runs or []]
    frames += [evals_as_runs(read_evals_csv(p)) for p in args.evals or []]
    frames += [read_linear_csv(p) for p in args.linear_eval or []]
    if not frames:
        raise ConfigError("dho paper-table: give --runs runs.csv, --evals evals.csv and/or --linear-eval "
                          "linear_eval.csv (repeatable)")
    runs = pd.concat(frames, ignore_index=True)
    for path in write_paper_table(layout, runs, load_reported(args.reported), args.out_dir):
        print(f"wrote {path}")
    return 0


def add_cli(sub: argparse._SubParsersAction) -> None:
    """Add ``collect``, ``tables``, ``figures``, ``rechoose``, ``collect-evals`` and ``ood-tables``."""
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
    p.add_argument("--out-dir", required=True, help="folder for comparison.* (and summary.* when there is more than one dataset)")
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

    p = sub.add_parser("readme-results", help="rewrite README.md's results block of a suite from its runs.csv "
                       "and rechoose.csv")
    p.add_argument("--suite", required=True, help="suite whose results/<suite>/ files are used")
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--readme", default="README.md", help="the file holding the block's markers (default: README.md)")
    p.add_argument("--figures-dir", help="where the figures are copied, relative to the README (default docs/SUITE)")
    p.add_argument("--no-figures", action="store_true", help="neither copy nor show the figures")
    p.set_defaults(func=_readme_results)

    p = sub.add_parser("paper-table", help="one paper table in the paper's layout, reported numbers beside",
                       description="Render a paper table (rows and columns as in the paper) from runs.csv / "
                                   "evals.csv: each cell = reproduced (reported, difference); 'missing' where the "
                                   "paper has a number and no run does.")
    p.add_argument("--layout", required=True,
                   help="a paper table: table1, fig4, table5, table13, ... (dho.results.paper)")
    p.add_argument("--runs", action="append", metavar="CSV", help="runs.csv of a suite (repeatable)")
    p.add_argument("--evals", action="append", metavar="CSV", help="evals.csv of an evaluation suite (repeatable)")
    p.add_argument("--linear-eval", action="append", metavar="CSV",
                   help="linear_eval.csv of a suite with a linear_eval block (repeatable; table5)")
    p.add_argument("--reported", help="reported-numbers CSV (default: the packaged reported.csv)")
    p.add_argument("--out-dir", required=True, help="folder for LAYOUT.md, LAYOUT.csv, LAYOUT.tex")
    p.set_defaults(func=_paper_table)

    p = sub.add_parser("collect-evals", help="collect `dho evaluate` records into evals.csv")
    p.add_argument("--suite", help="suite name written in the 'suite' column (default: each run's suite tag)")
    p.add_argument("--evals-root", help="folder searched recursively for evaluation records (*.json)")
    p.add_argument("--eval", action="append", metavar="FILE", help="an evaluation record (repeatable)")
    p.add_argument("--evals-file", action="append", metavar="LIST",
                   help="text file listing evaluation records, one per line (repeatable)")
    p.add_argument("--out", required=True, help="evals.csv to write")
    p.set_defaults(func=_collect_evals)

    p = sub.add_parser("collect-linear-eval", help="collect `dho linear-eval` records into linear_eval.csv")
    p.add_argument("--suite", required=True, help="suite name written in the 'suite' column")
    p.add_argument("--record", action="append", metavar="FILE", help="a linear-evaluation record (repeatable)")
    p.add_argument("--records-file", action="append", metavar="LIST",
                   help="text file listing linear-evaluation records, one per line (repeatable)")
    p.add_argument("--out", required=True, help="linear_eval.csv to write")
    p.set_defaults(func=_collect_linear_eval)

    p = sub.add_parser("ood-tables", help="out-of-distribution table (md, csv, tex) from evals.csv")
    p.add_argument("--evals", required=True, help="evals.csv written by `dho collect-evals`")
    p.add_argument("--out-dir", required=True, help="folder for NAME.md, NAME.csv, NAME.tex")
    p.add_argument("--name", default="ood", help="table file name (default: ood)")
    p.set_defaults(func=_ood_tables)
