"""Read labels and scores as their authors publish them.

``read_source(path, written, read)`` reads parquet, csv, text, jsonl, json, xlsx, mat,
npy, npz and pickle files into a ``pyarrow.Table``; ``read`` holds the options of
``READ_KEYS`` (``format_of`` says which format a file is read as, ``resolve_read``
checks the options and fills in their defaults).

``format_of``, ``resolve_read`` and ``READ_KEYS`` import neither pandas nor pyarrow, so
a manifest can be checked without them; ``read_source`` is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from materializer.readers.spec import FORMATS, READ_KEYS, ReadKey, format_of, resolve_read

if TYPE_CHECKING:
    from materializer.readers.source import read_source

__all__ = ["FORMATS", "READ_KEYS", "ReadKey", "format_of", "read_source", "resolve_read"]


def __getattr__(name: str) -> Any:
    if name == "read_source":  # pulls in pandas and pyarrow: only when a file is read
        from materializer.readers.source import read_source

        return read_source
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
