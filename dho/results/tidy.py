"""Typed CSV tables (``runs.csv``, ``evals.csv``): one column order, dtypes and row order,
written atomically and read back with their columns checked."""

from __future__ import annotations

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

    def tidy(self, df: pd.DataFrame) -> pd.DataFrame:
        """Columns in order, text/int/float dtypes, rows sorted deterministically."""
        df = df.reindex(columns=list(self.columns))
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
            df.loc[:, list(self.columns)].to_csv(tmp, index=False, float_format="%.10g")
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
