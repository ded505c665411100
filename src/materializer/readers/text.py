"""Delimited text as authors write it: any separator, decimal commas, no header, transposed.

The rules are tableio's for CSV: every cell is read as text, only an empty cell is
null, key columns stay exactly as written, and the other columns become numbers by
``type_csv_column`` only when every cell is one. The grid is read whole and without a
header, so ``transpose`` and the header rule apply to the same cells.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from materializer.errors import DataError
from materializer.readers.columns import grid_table
from materializer.readers.spec import WHITESPACE
from materializer.tableio import TextColumns, reading, type_csv_column


def read_text(path: Path, written: str, options: Mapping[str, Any],
              text_columns: TextColumns) -> pa.Table:
    """A delimited text file (formats csv and text) with its resolved read options."""
    grid = _grid(path, written, options)
    if options["transpose"]:
        grid = grid.T
    decimal = options["decimal"]
    return grid_table(grid, options, text_columns,
                      typed=lambda cells: _typed(_text(cells), decimal),
                      as_text=_text, written=written)


def _grid(path: Path, written: str, options: Mapping[str, Any]) -> np.ndarray:
    """Every cell as written (``None`` where empty), in a 2-D object array."""
    import pandas as pd

    sep = options["sep"]
    if sep == WHITESPACE:
        parse = {"sep": r"\s+"}
    elif len(sep) == 1:
        parse = {"sep": sep}
    else:  # pandas reads a longer separator as a regex, and only with its Python parser
        parse = {"sep": re.escape(sep), "engine": "python"}
    with reading(path, written):
        try:
            frame = pd.read_csv(path, header=None, index_col=False, dtype=str,
                                keep_default_na=False, na_values=[""],
                                encoding=options["encoding"], skiprows=options["skip_rows"],
                                comment=options["comment"], **parse)
        except UnicodeDecodeError as exc:
            codec = options["encoding"].removesuffix("-sig")
            raise DataError(f"not valid {codec} text ({exc.reason})",
                            file=written) from None
    return frame.to_numpy(dtype=object, na_value=None)


def _text(cells: np.ndarray) -> pa.Array:
    return pa.array(cells, type=pa.string())


def _typed(column: pa.Array, decimal: str) -> pa.Array | pa.ChunkedArray:
    """Numbers where every cell is one; with a decimal comma, ``67,29`` is 67.29.

    Under a decimal comma a cell holding ``.`` is not a number, so such a column stays text.
    """
    if decimal == ".":
        return type_csv_column(pa.chunked_array([column]))
    if pc.any(pc.match_substring(column, ".")).as_py():
        return column
    typed = type_csv_column(pa.chunked_array([pc.replace_substring(column, ",", ".")]))
    return column if pa.types.is_string(typed.type) else typed
