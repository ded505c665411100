"""``read_source``: one call that reads a label or score file in its author's format."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from materializer import files, tableio
from materializer.readers.arrays import read_npy, read_npz, read_pickle
from materializer.readers.jsontext import read_json
from materializer.readers.matlab import read_mat
from materializer.readers.sheet import read_sheet
from materializer.readers.spec import resolve_read
from materializer.readers.text import read_text

_BINARY = {"mat": read_mat, "npy": read_npy, "npz": read_npz, "pickle": read_pickle}


def read_source(path: Path, written: str, read: Mapping[str, Any] | None = None,
                text_columns: tableio.TextColumns = ()) -> pa.Table:
    """Read ``path`` (shown to the user as ``written``) with the manifest's ``read`` options.

    ``text_columns`` (names, or a function of the column names) keep their cells exactly
    as written where a file holds text (csv, text, json, xlsx); values read from binary
    formats (mat, npy, npz, pickle) are already typed and pass through unchanged. A
    parquet or JSONL file, or a CSV one with no read options besides ``format``, is read
    by ``tableio.read_table``, so the tables the joins read today read the same.
    """
    options = resolve_read(written, read)
    fmt = options["format"]
    plain = not set(read or {}) - {"format"}
    by_extension = files.FORMATS.get(Path(written).suffix.lower())
    if fmt == by_extension and (fmt in ("parquet", "jsonl") or fmt == "csv" and plain):
        return tableio.read_table(path, written, text_columns=text_columns)
    if fmt == "parquet":  # named by read.format, not by its extension
        with tableio.reading(path, written):
            return pq.read_table(path)
    if fmt in ("csv", "text"):
        return read_text(path, written, options, text_columns)
    if fmt in ("json", "jsonl"):  # JSON lines are objects back to back
        return read_json(path, written, text_columns)
    if fmt == "xlsx":
        return read_sheet(path, written, options, text_columns)
    return _BINARY[fmt](path, written, options)
