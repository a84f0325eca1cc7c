"""Reading tables (CSV, TSV, Parquet, JSON Lines) with pandas, imported only when a table is read."""
from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from .bundle import DataFileError
from .packaged import DataNotInstalledError, optional_module

__all__ = ["TABLE_FORMATS", "read_table", "concat_rows", "check_no_missing", "row_name"]

TABLE_FORMATS = ("csv", "tsv", "parquet", "jsonl")
PANDAS_INSTALL = "python3 -m pip install pandas pyarrow  (or: python3 -m pip install 'retrograd[data]')"


def _pandas() -> Any:
    return optional_module("pandas", needed_for="reading tables", install=PANDAS_INSTALL)


def read_table(path: str | os.PathLike, fmt: str) -> Any:
    """The table at ``path`` as a pandas DataFrame (``fmt``: "csv", "tsv", "parquet" or "jsonl", one
    JSON object a line); column names are strings."""
    pd = _pandas()
    path = pathlib.Path(path)
    try:
        if fmt == "parquet":
            try:
                df = pd.read_parquet(path)
            except ImportError as e:  # neither pyarrow nor fastparquet
                raise DataNotInstalledError(f"{path}: reading Parquet needs pyarrow ({e}); install it with: "
                                            f"{PANDAS_INSTALL}") from None
        elif fmt == "jsonl":
            df = pd.read_json(path, lines=True, dtype=False)
        else:
            df = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",")
    except DataNotInstalledError:
        raise
    except (OSError, ValueError) as e:  # pandas' parser errors are ValueErrors
        raise DataFileError(f"{path}: cannot read it as {fmt.upper()} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    df.columns = [str(c) for c in df.columns]
    if len(set(df.columns)) != len(df.columns):
        raise DataFileError(f"{path}: column names must be distinct, got {list(df.columns)}")
    return df


def concat_rows(a: Any, b: Any) -> Any:
    """The rows of DataFrame ``a`` then ``b`` (a new 0-based index)."""
    return _pandas().concat([a, b], ignore_index=True)


def row_name(i: int, fmt: str | None) -> str:
    """How a message names data row ``i`` (0-based): ``row 3`` and, for CSV/TSV, its line."""
    line = i + 2 if fmt in ("csv", "tsv") else i + 1 if fmt == "jsonl" else None
    return f"row {i + 1}" + (f" (line {line} of the file)" if line is not None else "")


def check_no_missing(df: Any, columns: list[str], where: str, fmt: str | None) -> None:
    """A ``DataFileError`` naming the first missing value (NaN, empty field) of ``columns``."""
    missing = df[columns].isna().to_numpy()
    if missing.any():
        r, c = np.argwhere(missing)[0]
        raise DataFileError(f"{where}: missing value in column {columns[c]!r}, {row_name(int(r), fmt)}; "
                            "fill it in or drop the row")
