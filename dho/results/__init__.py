"""From run directories to the paper's tables and figures.

``collect`` reads finished run directories into one tidy ``runs.csv``; every table
(``tables``), figure (``figures``) and the re-chosen inference rule (``rechoose``) is
derived from that file only.  Reported numbers live in ``reported.csv`` (package data).
"""

from .collect import RUNS_COLUMNS, collect_runs, read_runs_csv, write_runs_csv
from .reported import load_reported

__all__ = ["RUNS_COLUMNS", "collect_runs", "read_runs_csv", "write_runs_csv", "load_reported"]
