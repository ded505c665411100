"""Reading and writing tables: parquet, CSV, JSONL/NDJSON and JSON, chosen by extension.

Tables travel as ``pyarrow.Table`` so that parquet inputs keep their exact schema (list
columns, nullable integers, metadata). A CSV cell is text as written; only an empty cell
is null. ``csv_types`` (see ``type_csv_column``) gives a typed output numbers where every
cell of a column is one. Formats and atomic writes live in :mod:`materializer.files`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from materializer.errors import DataError
from materializer.files import table_format


@contextlib.contextmanager
def reading(path: Path, written: str) -> Iterator[None]:
    """Turn the ways a file can be unreadable into one-line data errors naming it.

    Anything but a regular file (after links) is refused before a byte is read: a FIFO
    would block forever and ``/dev/zero`` would fill memory.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # the read below names the reason
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise DataError("is not a regular file (a FIFO, device or socket); give a table file",
                        file=written)
    try:
        yield
    except FileNotFoundError:
        raise DataError("file not found", file=written) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a table", file=written) from None
    except PermissionError:
        raise DataError("permission denied", file=written) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 text (byte {exc.start})", file=written) from None
    except pd.errors.EmptyDataError:
        raise DataError("file is empty", file=written) from None
    except (pd.errors.ParserError, csv.Error, pa.ArrowInvalid, pa.ArrowIOError,
            OSError) as exc:
        raise DataError(f"cannot read table: {_first_line(exc)}", file=written) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def read_columns(path: Path, written: str) -> list[str]:
    """Column names without reading the data (JSON tables are small and read whole)."""
    fmt = table_format(written)
    with reading(path, written):
        if fmt == "parquet":
            return list(pq.read_schema(path).names)
        if fmt == "csv":
            return _csv_columns(path, written)
    return list(read_table(path, written).column_names)


TextColumns = Sequence[str] | Callable[[list[str]], Sequence[str]]
"""Columns kept exactly as written, or a function choosing them from the column names."""


def read_table(path: Path, written: str, text_columns: TextColumns = (),
               csv_types: bool = True) -> pa.Table:
    """Read a whole table; ``text_columns`` are kept exactly as written (keys).

    ``text_columns`` may be a function of the column names (a key column found by its
    name): it sees the header of a parquet or CSV file, and the parsed columns of a JSON
    one, so a JSON table is parsed once. A CSV file is read as text; with ``csv_types``
    its other columns become numbers by ``type_csv_column``, without it every cell
    stays as written (a CSV-to-CSV join).
    """
    fmt = table_format(written)
    with reading(path, written):
        if fmt == "parquet":
            table = pq.read_table(path)
            return _check_text_columns(table, _chosen(text_columns, table.column_names),
                                       written)
        if fmt == "csv":
            header = _csv_columns(path, written)
            text = set(_chosen(text_columns, header))
            columns = csv_text_by_arrow(path, header) or csv_text_by_pandas(path, written)
            if csv_types:
                columns = typed_csv_columns(header, columns, text)
            return pa.table(columns, names=header)
        if fmt == "jsonl" and (table := jsonl_by_arrow(path, text_columns)) is not None:
            return table
    return json_by_python(path, written, text_columns)


def json_by_python(path: Path, written: str, text_columns: TextColumns = ()) -> pa.Table:
    """A JSON or JSON-lines table by Python's parser: every row's values as Python
    objects, each column typed by Arrow from its values; key values as their text."""
    with reading(path, written):
        frame = read_jsonl(path, written) if table_format(written) == "jsonl" \
            else frame_from_rows(_json_rows(path, written), written)
    if frame.columns.duplicated().any():
        raise DataError("duplicate column names", file=written)
    for column in _chosen(text_columns, [str(c) for c in frame.columns]):
        if column in frame.columns:  # JSON keys may mix numbers and text
            frame[column] = frame[column].map(str, na_action="ignore").astype(object)
    return _arrow_from_frame(frame, written)


def csv_text_by_arrow(path: Path, header: list[str]) -> list[pa.ChunkedArray] | None:
    """Every cell as text (an empty cell null), by Arrow's multithreaded CSV reader; None
    where the file needs pandas' rules (quotes inside fields, lone carriage returns, rows
    of another length, one column, names pandas renames), so both give the same cells
    or Arrow gives none."""
    import pyarrow.csv as pcsv

    if len(header) < 2:  # pandas skips a line of spaces, which Arrow reads as a cell
        return None
    quoting = _quoting(path)
    if quoting == "other":
        return None
    try:
        table = pcsv.read_csv(  # a newline inside a value needs quotes around it
            path, parse_options=pcsv.ParseOptions(newlines_in_values=quoting == "fields"),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=True,
                null_values=[""], quoted_strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeError):
        return None
    if table.column_names != header:
        return None
    return list(table.columns)


_FIELD_EDGES = np.array([ord(","), ord("\n"), ord("\r")], dtype=np.uint8)
_BLOCK = 1 << 24


def _quoting(path: Path) -> Literal["none", "fields", "other"]:
    """Whether Arrow's reader and pandas' read the file alike: no quotes, or quotes only
    around whole fields (RFC 4180: an opening quote starts a field, its closing quote
    ends it, and ``""`` inside stands for one), which leaves out a quote left open at
    the end of the file (Arrow closes it, pandas refuses the file); and carriage
    returns only in CRLF. Else "other".

    Read in blocks, with NumPy over each block's bytes: the quotes' positions and their
    neighbours, then one check over all of them."""
    positions, before, after = [], [], []
    size = path.stat().st_size
    with open(path, "rb") as handle:
        offset, previous = 0, ord("\n")  # the file starts a field
        block = handle.read(_BLOCK)
        while block:
            following = handle.read(_BLOCK)
            raw = np.frombuffer(block, np.uint8)
            beyond = following[0] if following else 0
            if b"\r" in block:  # found by memchr; NumPy only for a block that has one
                returns = np.flatnonzero(raw == ord("\r"))
                if (_bytes_at(raw, returns + 1, beyond) != ord("\n")).any():
                    return "other"
            at = np.flatnonzero(raw == ord('"'))
            positions.append(at + offset)
            before.append(_bytes_at(raw, at - 1, previous))
            after.append(_bytes_at(raw, at + 1, beyond))
            offset, previous, block = offset + len(block), block[-1], following
    quotes = np.concatenate(positions) if positions else np.empty(0, np.int64)
    if not len(quotes):
        return "none"
    if len(quotes) % 2:
        return "other"
    paired = np.zeros(len(quotes) + 1, dtype=bool)  # paired[i + 1]: quote i+1 follows i
    paired[1:-1] = quotes[1:] == quotes[:-1] + 1
    opening = np.isin(np.concatenate(before)[0::2], _FIELD_EDGES) | paired[0:-1:2]
    closing = np.isin(np.concatenate(after)[1::2], _FIELD_EDGES) | paired[2::2] \
        | (quotes[1::2] == size - 1)
    return "fields" if opening.all() and closing.all() else "other"


def _bytes_at(raw: np.ndarray, at: np.ndarray, outside: int) -> np.ndarray:
    """The byte at each of ``at`` in a block, ``outside`` (the neighbouring block's byte)
    where ``at`` falls just before or after it."""
    return np.where((at >= 0) & (at < len(raw)), raw[np.clip(at, 0, len(raw) - 1)], outside)


def csv_text_by_pandas(path: Path, written: str) -> list[pa.ChunkedArray]:
    """Every cell as text (an empty cell null), by pandas: the rule Arrow's reader meets."""
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False,
                        na_values=[""])
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas turns the extra leading fields of a too-long first row into an
        # index, shifting every column; preserve_index=False would then drop data.
        raise DataError("row 1 has more fields than the header", file=written)
    return [pc.cast(c, pa.string()) for c in _arrow_from_frame(frame, written).columns]


def typed_csv_columns(header: Sequence[str], columns: Sequence[pa.ChunkedArray],
                      text: set[str]) -> list[pa.ChunkedArray]:
    """``type_csv_column`` for every column not in ``text``, columns in parallel threads
    (Arrow's kernels release the GIL)."""
    def typed(name: str, column: pa.ChunkedArray) -> pa.ChunkedArray:
        return column if name in text else type_csv_column(column)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(typed, header, columns))


def type_csv_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The one typing rule for CSV cells going to a typed format (parquet, JSON).

    A column is int64 when every non-empty cell is an integer written without a sign
    ``+`` or leading zeros (``-?(0|[1-9][0-9]*)``) and fits, float64 when every one is
    a decimal number (``-?((0|[1-9][0-9]*)(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?``) or
    ``nan``/``inf``/``infinity`` in any case, and text as written otherwise: ``0042``,
    ``TRUE``, ``NA`` and ``None`` stay text, so nothing written turns into another
    value or a null.
    """
    present = column.drop_null()
    if len(present) == 0 or not pa.types.is_string(column.type):
        return column
    first = present.slice(0, 1)  # one cell decides which full check can succeed
    for kind in (pa.int64(), pa.float64()):
        if _as_written(first, kind) is not None and \
                (typed := _as_written(column, kind)) is not None:
            return typed
    return column


def _as_written(column: pa.Array | pa.ChunkedArray, kind: pa.DataType) \
        -> pa.Array | pa.ChunkedArray | None:
    """``column`` cast to ``kind`` if every cell is a number as the rule writes one.

    Arrow's parser reads exactly those, and more: a leading ``+``, leading zeros
    (``007``, ``-01.5``) and, for integers, hexadecimal (``0x1F``, which starts with a
    zero too). The cast decides, and the first bytes of each cell refuse those; one
    cast and a few NumPy steps cost a third of a regex over every cell."""
    try:
        values = pc.cast(column, kind)
    except pa.ArrowInvalid:  # not numbers, or an integer beyond int64
        return None
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    integer = pa.types.is_integer(kind)
    return None if any(_unusual_start(chunk, integer).any() for chunk in chunks) else values


def _unusual_start(text: pa.Array, integer: bool) -> np.ndarray:
    """Cells that start with ``+``, or whose first digit is a zero followed by more
    (any character for an integer, a digit for a decimal number)."""
    bounds, raw = string_buffers(text)
    start, length = bounds[:-1], bounds[1:] - bounds[:-1]
    last = max(len(raw) - 1, 0)

    def byte(at: int) -> np.ndarray:  # 0 past a cell's end
        if not len(raw):
            return np.zeros(len(start), dtype=np.uint8)
        return np.where(length > at, raw[np.minimum(start + at, last)], 0)

    head = byte(0)
    signed = head == ord("-")
    digit, after = np.where(signed, byte(1), head), np.where(signed, byte(2), byte(1))
    more = after != 0 if integer else (after >= ord("0")) & (after <= ord("9"))
    unusual = (head == ord("+")) | ((digit == ord("0")) & more)
    if text.null_count:
        unusual &= pc.is_valid(text).to_numpy(zero_copy_only=False)
    return unusual


def string_buffers(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's byte bounds (``bounds[i]:bounds[i + 1]`` is string ``i``) and its
    bytes, as NumPy views of the Arrow buffers."""
    _, offsets, data = text.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32, count=len(text) + 1,
                           offset=4 * text.offset).astype(np.int64)
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, np.uint8)
    return bounds, raw


def float_values(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as float64, NaN where a row holds no number (null, or text that is not
    one): Arrow's cast for numbers and clean text, pandas' ``to_numeric`` for the text
    Arrow cannot cast (a column of CSV cells, say, with a ``n/a`` among them)."""
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return np.asarray(pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False),
                          dtype="float64")
    text = pc.cast(values, pa.string())
    with contextlib.suppress(pa.ArrowInvalid):
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    return pd.to_numeric(text.to_pandas(), errors="coerce").to_numpy(dtype="float64",
                                                                    na_value=np.nan)


def _chosen(text_columns: TextColumns, columns: list[str]) -> Sequence[str]:
    return text_columns(columns) if callable(text_columns) else text_columns


def _check_text_columns(table: pa.Table, text_columns: Sequence[str], written: str) \
        -> pa.Table:
    """Key columns hold scalars: a list or struct column cannot be a key."""
    for name in text_columns:
        if name in table.column_names and pa.types.is_nested(table.schema.field(name).type):
            raise DataError(f"key column holds {table.schema.field(name).type} values, not "
                            "text or numbers", file=written, column=name)
    return table


def _csv_columns(path: Path, written: str) -> list[str]:
    """The header's names as pandas reads them; a name given twice is an error.

    Read with the csv module (one line, no pandas parser start-up): blank lines before
    the header are skipped and an empty name becomes ``Unnamed: <position>``, as pandas
    does. A repeated name would be renamed ``NAME.1`` by pandas, so it is refused here.
    """
    with open(path, encoding="utf-8-sig", newline="") as handle:
        raw = next((row for row in csv.reader(handle) if row), None)
    if raw is None:
        raise DataError("file is empty", file=written)
    repeated = sorted({name for name in raw if name and raw.count(name) > 1})
    if repeated:
        raise DataError(f"duplicate column names: {', '.join(repeated)}", file=written,
                        column=repeated[0])
    return [name or f"Unnamed: {position}" for position, name in enumerate(raw)]


_FLAT_JSON = (pa.types.is_string, pa.types.is_int64, pa.types.is_float64,
              pa.types.is_boolean, pa.types.is_null)


def jsonl_by_arrow(path: Path, text_columns: TextColumns) -> pa.Table | None:
    """JSON lines by Arrow's multithreaded reader, where it gives the table the Python
    parser gives (``read_jsonl``): flat columns of text, int64, float64, booleans or
    nulls, key columns as text. None otherwise (lists, objects, text read as times,
    numbers beyond int64, a key written as a number, a line that is no object, a type
    that changes): the Python parser then decides, or names the line."""
    import pyarrow.json as pjson

    if path.stat().st_size == 0:
        return None  # the Python parser names it empty
    try:
        table = pjson.read_json(path)
        table.validate(full=True)  # the reader leaves invalid UTF-8 in its strings
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeError):
        return None
    if not table.num_columns or not all(any(flat(f.type) for flat in _FLAT_JSON)
                                        for f in table.schema):
        return None
    keys = _chosen(text_columns, table.column_names)
    if not all(pa.types.is_string(table.schema.field(k).type)
               for k in keys if k in table.column_names):
        return None
    for field in table.schema:  # an integer beyond int64 would have become a float
        if pa.types.is_float64(field.type) and pc.any(pc.greater_equal(
                pc.abs(table.column(field.name)), 2.0**63)).as_py():
            return None
    return table


def read_jsonl(path: Path, written: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError("file is empty", file=written)
    text = path.read_bytes().decode("utf-8-sig")
    # Only "\n" ends a JSON line: str.splitlines would also split inside a string at
    # U+0085, U+2028 or U+2029, rewriting the key it is part of.
    lines = [line for line in text.split("\n") if line.strip(" \t\r")]
    try:
        rows = json.loads("[" + ",".join(lines) + "]")  # one parse for the whole file
    except json.JSONDecodeError:
        rows = None
    if rows is not None and all(isinstance(row, dict) for row in rows):
        return frame_from_rows(rows, written)
    # Only on the error path: find the first line that does not parse, to name it.
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"line {number} is not valid JSON ({exc.msg})",
                                file=written) from None
            if not isinstance(row, dict):
                raise DataError(f"line {number} is not a JSON object", file=written)
    raise DataError("cannot read JSON lines", file=written)


def load_json(path: Path, written: str) -> Any:
    """Parse a JSON document (UTF-8, with or without BOM), naming the file on failure."""
    with reading(path, written):
        text = path.read_bytes().decode("utf-8-sig")
    if not text.strip():
        raise DataError("file is empty", file=written)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc.msg} at line {exc.lineno}", file=written) \
            from None


def _json_rows(path: Path, written: str) -> list[Any]:
    payload = load_json(path, written)
    if isinstance(payload, dict) and isinstance(payload.get("rows"), list):
        return payload["rows"]
    if isinstance(payload, list):
        return payload
    raise DataError("JSON table must be a list of rows or a {\"rows\": [...]} object",
                    file=written)


def frame_from_rows(rows: list[Any], written: str) -> pd.DataFrame:
    """JSON rows as a frame of Python objects, so Arrow types each column from its values.

    An integer column with a null stays integer and ``40.0`` stays a float.
    """
    if not all(isinstance(row, dict) for row in rows):
        raise DataError("every JSON row must be an object", file=written)
    return pd.DataFrame(rows, dtype=object) if rows else pd.DataFrame()


def _arrow_from_frame(frame: pd.DataFrame, written: str) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    for column in frame.columns:  # name the column that mixes types
        try:
            pa.array(frame[column], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"mixed value types in a column: {_first_line(exc)}",
                            file=written, column=str(column)) from None
    raise DataError("cannot convert the table", file=written)


# --- writing -------------------------------------------------------------------------


def _json_ready(table: pa.Table) -> pa.Table:
    """Floating NaN becomes null so that JSON output stays valid JSON."""
    for index, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = table.column(index)
            nan = pc.fill_null(pc.is_nan(column), False)
            if pc.any(nan).as_py():
                table = table.set_column(index, field, pc.if_else(nan, None, column))
            if pc.any(pc.is_inf(column)).as_py():
                raise DataError("holds an infinite value, which JSON cannot represent; "
                                "write parquet or CSV instead", column=field.name)
    return table


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _rows_json(table: pa.Table) -> list[dict[str, Any]]:
    ordered = table.select(sorted(table.column_names))
    return _json_ready(ordered).to_pylist()


def _write_jsonl(table: pa.Table, handle: io.TextIOBase) -> None:
    encode = json.JSONEncoder(sort_keys=True, default=_json_default, allow_nan=False).encode
    for start in range(0, table.num_rows, 65536):
        rows = _rows_json(table.slice(start, 65536))
        handle.write("".join(encode(row) + "\n" for row in rows))


def _write_json(table: pa.Table, handle: io.TextIOBase) -> None:
    json.dump({"rows": _rows_json(table)}, handle, indent=2, sort_keys=True,
              default=_json_default, allow_nan=False)
    handle.write("\n")


PARQUET_COMPRESSION = "snappy"


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """How parquet is written: snappy pages, dictionary encoding for text columns only.

    pyarrow tries a dictionary for every column by default; for float features (all
    distinct) that is wasted work that falls back to plain pages: writing a 1M-row table
    of 30 float features took 1.08 s with it and 0.44 s without (and the file is
    smaller). Text columns (keys, statuses, sources) repeat and keep their dictionary.
    """
    text = [f.name for f in schema if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type) or pa.types.is_dictionary(f.type)]
    return {"compression": PARQUET_COMPRESSION, "use_dictionary": text}


def writer_settings(fmt: str) -> dict[str, Any]:
    """The writer settings an audit records, so a rerun is known to give the same bytes."""
    if fmt == "parquet":
        return {"format": fmt, "library": f"pyarrow {pa.__version__}",
                "compression": PARQUET_COMPRESSION, "dictionary": "text columns only"}
    return {"format": fmt, "library": f"pandas {pd.__version__}" if fmt == "csv"
            else "json (sorted keys)"}


def write_table_to(table: pa.Table, fmt: str, sink: io.RawIOBase) -> None:
    """Write ``table`` in ``fmt`` to the binary file ``sink`` (no atomicity or flush:
    see ``files.atomic_output`` and ``files.WriteBehind``)."""
    if fmt == "parquet":
        pq.write_table(table, sink, **parquet_options(table.schema))
        return
    if fmt == "csv":
        nested = next((f for f in table.schema if pa.types.is_nested(f.type)), None)
        if nested is not None:
            raise DataError(f"holds {nested.type} values, which a CSV cell cannot hold "
                            "without loss; write parquet, JSONL or JSON", column=nested.name)
    text = io.TextIOWrapper(sink, encoding="utf-8", newline="\n")
    if fmt == "csv":
        # Arrow-backed columns: nullable integers print as integers, floats round-trip.
        table.to_pandas(types_mapper=pd.ArrowDtype).to_csv(text, index=False,
                                                           lineterminator="\n")
    else:
        (_write_jsonl if fmt == "jsonl" else _write_json)(table, text)
    text.detach()  # flushed; the sink stays open for its caller
