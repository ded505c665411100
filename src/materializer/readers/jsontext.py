"""JSON tables, also as objects written back to back (``json.dump`` called once per row).

One document is a table by tableio's rule (a list of rows, or ``{"rows": [...]}``);
several documents, or a single object, are one row each.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from materializer import tableio
from materializer.errors import DataError

_BLANK = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


def read_json(path: Path, written: str, text_columns: tableio.TextColumns) -> pa.Table:
    """The rows of a JSON file as a table; ``text_columns`` hold each value's text."""
    with tableio.reading(path, written):
        text = path.read_bytes().decode("utf-8-sig")
    frame = tableio.frame_from_rows(_rows(_documents(text, written), written), written)
    if frame.columns.duplicated().any():
        raise DataError("duplicate column names", file=written)
    names = [str(c) for c in frame.columns]
    for column in text_columns(names) if callable(text_columns) else text_columns:
        if column in frame.columns:  # JSON keys may mix numbers and text
            frame[column] = frame[column].map(str, na_action="ignore")
    return tableio._arrow_from_frame(frame, written)  # its one rule for mixed-type columns


def _documents(text: str, written: str) -> list[Any]:
    """Every JSON value in ``text``, in order; one decode per value, as the format forces."""
    decoder = json.JSONDecoder()
    values, position = [], _BLANK.match(text).end()
    while position < len(text):
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise DataError(f"not valid JSON: {exc.msg} at line {exc.lineno}",
                            file=written) from None
        values.append(value)
        position = _BLANK.match(text, end).end()
    if not values:
        raise DataError("file is empty", file=written)
    return values


def _rows(values: list[Any], written: str) -> list[Any]:
    if len(values) == 1:
        (value,) = values
        if isinstance(value, dict) and isinstance(value.get("rows"), list):
            return value["rows"]
        return value if isinstance(value, list) else [value]
    if not all(isinstance(value, dict) for value in values):
        raise DataError("JSON values written back to back must each be an object (a row)",
                        file=written)
    return values
