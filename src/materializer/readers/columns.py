"""From what a reader found to a table: a grid of cells (text, sheets) or named arrays.

Both end in the same place, a ``pyarrow.Table`` with unique column names, so every
format follows one header rule and one length rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from materializer.errors import DataError, UsageError
from materializer.tableio import TextColumns

CellColumn = Callable[[np.ndarray], pa.Array | pa.ChunkedArray]
"""Turns one column of cells (an object array, ``None`` where empty) into Arrow."""


def grid_table(grid: np.ndarray, options: Mapping[str, Any], text_columns: TextColumns,
               typed: CellColumn, as_text: CellColumn, written: str) -> pa.Table:
    """A table from a 2-D object array of cells, ``None`` where a cell is empty.

    Completely empty trailing rows go (a sheet's formatted or a CSV's ``;;;;`` lines),
    and so do columns with neither a header name nor a value. ``names`` then name (or
    rename) the columns that remain; ``text_columns`` keep their cells as written.
    """
    empty = np.equal(grid, None)
    filled = np.flatnonzero(~empty.all(axis=1))
    if len(filled) == 0:
        raise DataError("file is empty", file=written)
    grid, empty = grid[: filled[-1] + 1], empty[: filled[-1] + 1]
    start = 1 if options["header"] else 0
    head = grid[0] if start else np.full(grid.shape[1], None, dtype=object)
    keep = np.flatnonzero(~(np.equal(head, None) & empty[start:].all(axis=0)))
    names = _names(_header_names(head, keep, as_text), options.get("names"), written)
    body = grid[start:]
    text = set(text_columns(names) if callable(text_columns) else text_columns)
    columns = [(as_text if name in text else typed)(body[:, position])
               for name, position in zip(names, keep, strict=True)]
    return pa.table(columns, names=names)


def _header_names(head: np.ndarray, keep: np.ndarray, as_text: CellColumn) -> list[str]:
    """Header cells as text; an empty one is ``Unnamed: <position>`` as pandas names it."""
    cells = as_text(head[keep]).to_pylist()
    return [f"Unnamed: {position}" if cell is None else cell
            for cell, position in zip(cells, keep, strict=True)]


def _names(found: list[str], names: Sequence[str] | None, written: str) -> list[str]:
    """The header's names, unless ``names`` replace them (one for each column)."""
    if names is None:
        repeated = sorted(name for name, count in Counter(found).items() if count > 1)
        if repeated:
            raise DataError(f"duplicate column names: {', '.join(repeated)}", file=written,
                            column=repeated[0])
        return found
    if len(names) != len(found):
        raise DataError(f"read.names has {len(names)} names but the file has {len(found)} "
                        f"columns ({', '.join(found)})", file=written)
    return list(names)


# --- named arrays (MATLAB variables, npz members, pickled dicts) ---------------------


def arrays_table(values: Sequence[tuple[str, Any]], names: Sequence[str] | None,
                 written: str) -> pa.Table:
    """One column per vector, K columns ``<name>_1 … <name>_K`` per N×K matrix.

    N×1 and 1×N are both one column. ``names`` rename the values in order. Every value
    must have the same number of rows: a table's columns are aligned by position.
    """
    if names is not None:
        if len(names) != len(values):
            raise DataError(f"read.names has {len(names)} names for {len(values)} "
                            f"variables ({', '.join(name for name, _ in values)})",
                            file=written)
        values = [(name, value) for name, (_, value) in zip(names, values, strict=True)]
    columns: dict[str, pa.Array] = {}
    rows: dict[str, int] = {}
    for name, value in values:
        array = _matrix(name, value, written)
        rows[name] = array.shape[0]
        parts = [(name, array[:, 0])] if array.shape[1] == 1 else \
            [(f"{name}_{k + 1}", array[:, k]) for k in range(array.shape[1])]
        for column, cells in parts:
            if column in columns:
                raise UsageError(f"two variables give the column {column!r}; rename them "
                                 "with read.names", file=written, column=column)
            columns[column] = _arrow(cells, column, written)
    if len(set(rows.values())) > 1:
        sizes = ", ".join(f"{name} {count}" for name, count in rows.items())
        raise DataError(f"variables have different lengths ({sizes}); choose ones of the "
                        "same length with read.variables", file=written)
    return pa.table(columns)


def _matrix(name: str, value: Any, written: str) -> np.ndarray:
    """The value as a 2-D array of rows × columns (a vector is one column)."""
    if isinstance(value, dict):
        keys = ", ".join(str(key) for key in value)
        raise DataError(f"{name!r} holds a dict or struct (keys: {keys}); name the ones to "
                        "read with read.variables", file=written, column=name)
    if not isinstance(value, np.ndarray | np.generic | list | tuple | str | int | float):
        raise DataError(f"{name!r} holds a {type(value).__name__}, not an array",
                        file=written, column=name)
    array = value if isinstance(value, np.ndarray) else np.asarray(
        value, dtype=object if isinstance(value, list | tuple) else None)
    if array.ndim == 2 and min(array.shape) <= 1:
        array = array.reshape(-1)
    if array.ndim > 2:
        raise DataError(f"{name!r} has shape {array.shape}; only vectors and matrices "
                        "become columns", file=written, column=name)
    return array.reshape(-1, 1) if array.ndim < 2 else array


def _arrow(cells: np.ndarray, column: str, written: str) -> pa.Array:
    if cells.dtype.kind == "c":
        raise DataError("holds complex numbers", file=written, column=column)
    if cells.dtype.kind == "S":
        cells = np.char.decode(cells, "utf-8")
    if not cells.dtype.isnative:  # Arrow holds native byte order only
        cells = cells.astype(cells.dtype.newbyteorder("="))
    try:
        array = pa.array(cells)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).splitlines()[0]
        raise DataError(f"cannot become a column: {reason}", file=written,
                        column=column) from None
    if pa.types.is_nested(array.type):
        raise DataError(f"holds {array.type} values, not numbers or text", file=written,
                        column=column)
    return array
