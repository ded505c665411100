"""Reading and writing tables: parquet, CSV, JSONL/NDJSON and JSON, chosen by extension.

Tables travel as ``pyarrow.Table`` so that parquet inputs keep their exact schema (list
columns, nullable integers, metadata); CSV and JSON go through pandas without date or
dtype guessing on strings. Writes are atomic: a temporary file in the target folder,
renamed into place only when complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandas._libs.parsers import STR_NA_VALUES

from materializer.errors import DataError, UsageError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
SUPPORTED = "parquet, pq, csv, jsonl, ndjson or json"


def table_format(path: str | os.PathLike[str]) -> str:
    """The format of a table path by its extension; refuses unknown ones before any read."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"unsupported table format {suffix or '(none)'!r}; use {SUPPORTED}",
                         file=os.fspath(path))
    return FORMATS[suffix]


@contextlib.contextmanager
def reading(path: Path, written: str) -> Iterator[None]:
    """Turn the ways a file can be unreadable into one-line data errors naming it."""
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
    except (pd.errors.ParserError, pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
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


def read_table(path: Path, written: str, text_columns: Sequence[str] = ()) -> pa.Table:
    """Read a whole table; ``text_columns`` are kept exactly as written (CSV keys)."""
    fmt = table_format(written)
    with reading(path, written):
        if fmt == "parquet":
            return _check_text_columns(pq.read_table(path), text_columns, written)
        if fmt == "csv":
            # Nullable dtypes: an integer column with a blank stays integer, not float.
            frame = pd.read_csv(path, encoding="utf-8-sig", dtype_backend="numpy_nullable",
                                dtype={c: "string" for c in text_columns},
                                **_csv_missing_values(_csv_columns(path, written),
                                                      text_columns))
            if not isinstance(frame.index, pd.RangeIndex):
                # pandas turns the extra leading fields of a too-long first row into an
                # index, shifting every column; preserve_index=False would then drop data.
                raise DataError("row 1 has more fields than the header", file=written)
        elif fmt == "jsonl":
            frame = read_jsonl(path, written)
        else:
            frame = frame_from_rows(_json_rows(path, written), written)
    if frame.columns.duplicated().any():
        raise DataError("duplicate column names", file=written)
    for column in text_columns:
        if fmt != "csv" and column in frame.columns:  # JSON keys may mix numbers and text
            frame[column] = frame[column].map(str, na_action="ignore")
    return _arrow_from_frame(frame, written)


def _check_text_columns(table: pa.Table, text_columns: Sequence[str], written: str) \
        -> pa.Table:
    """Key columns hold scalars: a list or struct column cannot be a key."""
    for name in text_columns:
        if name in table.column_names and pa.types.is_nested(table.schema.field(name).type):
            raise DataError(f"key column holds {table.schema.field(name).type} values, not "
                            "text or numbers", file=written, column=name)
    return table


def _csv_columns(path: Path, written: str) -> list[str]:
    """The header's names; a name given twice is an error (pandas renames it ``NAME.1``)."""
    raw = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False,
                      encoding="utf-8-sig").iloc[0].tolist()
    repeated = sorted({name for name in raw if name and raw.count(name) > 1})
    if repeated:
        raise DataError(f"duplicate column names: {', '.join(repeated)}", file=written,
                        column=repeated[0])
    return list(pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns)


def _csv_missing_values(header: Sequence[str], text_columns: Sequence[str]) \
        -> dict[str, Any]:
    """Only an empty cell is a missing key: ``NA``, ``None`` or ``null`` are keys as written.

    Other columns keep pandas' usual missing-value words. Without this a key such as
    ``NA`` would be lost on a CSV round trip (written as text, read back as null).
    """
    if not text_columns:
        return {}
    defaults = sorted(STR_NA_VALUES)
    return {"keep_default_na": False,
            "na_values": {c: [""] if c in text_columns else defaults for c in header}}


def read_jsonl(path: Path, written: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise DataError("file is empty", file=written)
    text = path.read_bytes().decode("utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
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


def write_table_to(table: pa.Table, fmt: str, target: Path) -> None:
    """Write ``table`` to ``target`` in ``fmt`` (no atomicity: see ``atomic_output``)."""
    if fmt == "parquet":
        pq.write_table(table, target)
    elif fmt == "csv":
        # Arrow-backed columns: nullable integers print as integers, floats round-trip.
        table.to_pandas(types_mapper=pd.ArrowDtype).to_csv(target, index=False,
                                                           lineterminator="\n")
    else:
        with open(target, "w", encoding="utf-8", newline="\n") as handle:
            (_write_jsonl if fmt == "jsonl" else _write_json)(table, handle)


@contextlib.contextmanager
def atomic_output(target: Path, written: str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; the caller renames it with ``commit``.

    The temporary file is removed on any failure, so nothing partial is left behind.
    """
    created = _missing_folders(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = _new_temp_file(target)
    except OSError as exc:
        _remove_folders(created)
        blocker = next((p for p in (target.parent, *target.parent.parents)
                        if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker else exc.strerror or exc
        raise DataError(f"cannot create output: {reason}", file=written) from None
    try:
        yield temp
    except OSError as exc:
        temp.unlink(missing_ok=True)
        _remove_folders(created)
        raise DataError(f"cannot write output: {exc.strerror or exc}", file=written) from None
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        _remove_folders(created)
        if isinstance(exc, DataError) and exc.file is None:
            exc.file = written  # a problem found while writing names the output
        raise


def _new_temp_file(target: Path) -> Path:
    """A new empty ``.NAME.<random>.tmp`` beside ``target``, with the umask's permissions.

    (``tempfile.mkstemp`` creates mode 0600, which the rename would carry over to the
    published table: other users of a shared folder could not read it.)
    """
    while True:
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp


def _missing_folders(folder: Path) -> list[Path]:
    """The folders that creating ``folder`` would create, deepest first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove folders a failed write created (deepest first), if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def write_json_document(payload: Any, target: Path) -> None:
    """Write sorted, indented JSON with a trailing newline (audits and reports)."""
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


def commit_outputs(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Rename finished temporary files into place, in order."""
    for temp, target in pairs:
        os.replace(temp, target)


def fsync_file(path: Path) -> None:
    """Flush a finished file to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

