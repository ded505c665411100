"""One sheet of an .xlsx/.xlsm workbook, read with openpyxl (values, not formulas).

An empty cell (or one holding empty text) is null. A column whose cells are all
numbers (or all text, dates, booleans) keeps that type; one that mixes them is text, a
number printed as its shortest repr. A formula cell gives the value the workbook last saved for it.
"""

from __future__ import annotations

import datetime
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

import numpy as np
import pyarrow as pa

from materializer.errors import DataError
from materializer.readers.columns import grid_table
from materializer.tableio import TextColumns, reading


def read_sheet(path: Path, written: str, options: Mapping[str, Any],
               text_columns: TextColumns) -> pa.Table:
    """The chosen sheet (a name, or a 0-based position) as a table."""
    grid = _grid(path, written, options["sheet"], options["skip_rows"])
    return grid_table(grid, options, text_columns, typed=_typed, as_text=_text,
                      written=written)


def _grid(path: Path, written: str, sheet: str | int, skip_rows: int) -> np.ndarray:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    with reading(path, written), open(path, "rb") as handle:
        try:  # a handle, so that openpyxl does not judge the file by its extension
            book = load_workbook(handle, read_only=True, data_only=True)
            try:
                chosen = _sheet(book, sheet, written)
                chosen.reset_dimensions()  # a stored size may span formatted empty cells
                rows = list(chosen.iter_rows(min_row=skip_rows + 1, values_only=True))
            finally:
                book.close()
        except (zipfile.BadZipFile, zlib.error, InvalidFileException, ParseError, KeyError,
                ValueError, TypeError, EOFError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"not a readable .xlsx workbook: {reason}", file=written) from None
    # openpyxl yields one tuple per row, and rows may differ in length: pad them.
    grid = np.full((len(rows), max(map(len, rows), default=0)), None, dtype=object)
    for index, row in enumerate(rows):
        grid[index, : len(row)] = row
    grid[np.equal(grid, "")] = None  # a cell holding empty text looks, and is, empty
    return grid


def _sheet(book: Any, sheet: str | int, written: str) -> Any:
    names = book.sheetnames
    found = names[sheet] if isinstance(sheet, int) and sheet < len(names) else \
        sheet if sheet in names else None
    if found is None:
        raise DataError(f"has no sheet {sheet!r}; sheets: {', '.join(names)}", file=written)
    return book[found]


def _typed(cells: np.ndarray) -> pa.Array:
    try:
        return pa.array(cells)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _text(cells)


def _text(cells: np.ndarray) -> pa.Array:
    # Each cell is a Python value from openpyxl, so it is printed one by one.
    return pa.array([None if cell is None else _cell_text(cell) for cell in cells],
                    type=pa.string())


def _cell_text(cell: Any) -> str:
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"  # as a spreadsheet shows it
    if isinstance(cell, datetime.date | datetime.time):
        return cell.isoformat()
    return cell if isinstance(cell, str) else repr(cell)
