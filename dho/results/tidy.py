"""Typed CSV tables (``runs.csv``, ``evals.csv``): one column order, dtypes and row order,
written atomically and read back with their columns checked."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..io import atomic_path


@dataclass(frozen=True)
class TidyTable:
    what: str                      # e.g. "runs table": used in error messages
    columns: tuple[str, ...]
    text_columns: tuple[str, ...]
    int_columns: tuple[str, ...]
    sort_keys: tuple[str, ...]
    hint: str                      # how to make the file, e.g. "run `dho collect` first"
    extra_prefix: str = ""         # further columns with this prefix are kept, after the fixed ones

    def extra_columns(self, df: pd.DataFrame) -> list[str]:
        """The prefixed extra columns of ``df``, sorted (none without a prefix)."""
        if not self.extra_prefix:
            return []
        return sorted(c for c in df.columns if isinstance(c, str) and c.startswith(self.extra_prefix)
                      and c not in self.columns)

    def tidy(self, df: pd.DataFrame) -> pd.DataFrame:
        """Columns in order, text/int/float dtypes, rows sorted deterministically."""
        extra = self.extra_columns(df)
        df = df.reindex(columns=list(self.columns) + extra)
        for col in extra:  # numbers stay numbers; anything else (true/false, names) stays text
            numeric = pd.to_numeric(df[col], errors="coerce")
            is_num = df[col].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                                 or (isinstance(v, str) and v.strip() != "" and not v.strip().lower()
                                     in ("true", "false")))
            if bool((numeric.notna() | df[col].isna()).all()) and bool(is_num[df[col].notna()].all()):
                df[col] = numeric.astype("float64")
            else:
                df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                                      else str(v).lower() if isinstance(v, bool) else str(v)).astype(object)
        for col in self.columns:
            if col in self.text_columns:
                df[col] = df[col].astype(object).where(df[col].notna(), None)
            elif col in self.int_columns:
                df[col] = df[col].astype("int64")
            else:
                df[col] = pd.to_numeric(df[col]).astype("float64")
        return df.sort_values(list(self.sort_keys), kind="mergesort", na_position="last").reset_index(drop=True)

    def write(self, df: pd.DataFrame, path: str | os.PathLike) -> Path:
        """Write ``df`` to ``path`` atomically; returns the path."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise DataError(f"{self.what} for {path} lacks column(s) {', '.join(missing)}")
        path = Path(path)
        with atomic_path(path) as tmp:
            df.loc[:, list(self.columns) + self.extra_columns(df)].to_csv(tmp, index=False, float_format="%.10g")
        return path

    def read(self, path: str | os.PathLike) -> pd.DataFrame:
        """Read a file written by :meth:`write`; checks the columns and the numeric values."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{self.what} not found: {path} ({self.hint})")
        try:
            df = pd.read_csv(path, dtype={c: str for c in self.text_columns}, keep_default_na=False,
                             na_values={c: [""] for c in self.columns})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{self.what} {path} is not a readable CSV: {e}") from None
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise DataError(f"{self.what} {path} lacks column(s) {', '.join(missing)}; "
                            f"expected the columns of docs/DESIGN.md")
        try:
            return self.tidy(df)
        except (ValueError, TypeError) as e:
            raise DataError(f"{self.what} {path} has a non-numeric value in a numeric column: {e}") from None
