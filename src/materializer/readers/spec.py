"""Which ``read`` options exist, which formats they apply to, and their effective values.

Nothing here imports pandas, pyarrow or numpy: a manifest is planned and checked
without them. ``READ_KEYS`` is the one declaration a manifest schema and the docs are
derived from; ``resolve_read`` checks a ``read`` mapping against it (with the same JSON
Schema fragments) and fills in the defaults, so what was read can be recorded.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from materializer import files
from materializer.errors import UsageError

FORMATS = ("parquet", "csv", "text", "jsonl", "json", "xlsx", "mat", "npy", "npz", "pickle")
EXTENSIONS = {
    **files.FORMATS,  # the table formats the joins already read keep their meaning
    ".txt": "text", ".tsv": "text", ".dat": "text",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".mat": "mat", ".npy": "npy", ".npz": "npz", ".pkl": "pickle", ".pickle": "pickle",
}
UNREAD_EXTENSIONS = {".xls": "xlsx", ".ods": "xlsx"}
"""Spreadsheets openpyxl cannot open: the message says to save them as .xlsx."""

WHITESPACE = "whitespace"
DELIMITED = frozenset({"csv", "text"})
SHEETS = frozenset({"xlsx"})
CONTAINERS = frozenset({"mat", "npy", "npz", "pickle"})
POSITIONAL = frozenset({"npy", "pickle"})
"""Formats whose containers may be a sequence, so a variable may be a 0-based position."""

_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
          "uniqueItems": True}


@dataclass(frozen=True)
class ReadKey:
    """One ``read`` option: the formats it applies to, its JSON Schema, default and help."""

    formats: frozenset[str]
    schema: Mapping[str, Any]
    default: Any
    doc: str


READ_KEYS: Mapping[str, ReadKey] = {
    "format": ReadKey(frozenset(FORMATS), {"enum": list(FORMATS)}, None,
                      "The file's format; by default from its extension."),
    "sep": ReadKey(DELIMITED, {"type": "string", "minLength": 1}, None,
                   "Field separator, any string (\",\", \";\", \", \", \"\\t\"), or "
                   "\"whitespace\" for runs of spaces and tabs. Default: \",\" for .csv, tab "
                   "for .tsv, whitespace for .txt and .dat. A longer separator is matched "
                   "literally, and quotes are then not special."),
    "header": ReadKey(DELIMITED | SHEETS, {"type": "boolean"}, True,
                      "Whether the first row (after skip_rows) names the columns."),
    "names": ReadKey(DELIMITED | SHEETS | CONTAINERS, _NAMES, None,
                     "Column names in order: required when header is false, else they "
                     "rename the columns; for containers, one per variable."),
    "decimal": ReadKey(DELIMITED, {"enum": [".", ","]}, ".",
                       "Decimal mark of numbers (\"67,29\" with \",\")."),
    "encoding": ReadKey(DELIMITED, {"type": "string", "minLength": 1}, "utf-8",
                        "Text encoding; UTF-8 is read with or without a byte-order mark."),
    "skip_rows": ReadKey(DELIMITED | SHEETS, {"type": "integer", "minimum": 0}, 0,
                         "Lines (rows of a sheet) to skip before the header or data."),
    "comment": ReadKey(DELIMITED, {"type": "string", "minLength": 1, "maxLength": 1}, None,
                       "A character that starts a comment running to the end of the line."),
    "transpose": ReadKey(DELIMITED, {"type": "boolean"}, False,
                         "Rows become columns first (a file with one row per field); the "
                         "header rule then applies to the first former column."),
    "sheet": ReadKey(SHEETS, {"type": ["string", "integer"], "minLength": 1, "minimum": 0}, 0,
                     "Sheet name, or 0-based position; default the first."),
    "variables": ReadKey(CONTAINERS, {**_NAMES, "items": {"type": ["string", "integer"],
                                                          "minLength": 1, "minimum": 0}},
                         None,
                         "Variables to read, in order: MATLAB names dotted into structs "
                         "(s.field), npz members or dict keys, or 0-based positions in a "
                         "pickled list or tuple. Default: every one in the file."),
}


def format_of(written: str, read: Mapping[str, Any] | None = None) -> str:
    """``read.format`` if given, else the format the file's extension names."""
    given = (read or {}).get("format")
    if given is not None:
        if given not in FORMATS:
            raise UsageError(f"unknown read.format {given!r}; use {', '.join(FORMATS)}",
                             file=written)
        return given
    suffix = PurePath(written).suffix.lower()
    if suffix in UNREAD_EXTENSIONS:
        raise UsageError(f"{suffix} spreadsheets cannot be read; save the sheet as .xlsx",
                         file=written)
    if suffix not in EXTENSIONS:
        raise UsageError(f"unknown table format {suffix or '(none)'!r}; use one of "
                         f"{', '.join(sorted(EXTENSIONS))} or set read.format", file=written)
    return EXTENSIONS[suffix]


def resolve_read(written: str, read: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``read`` for ``written`` and return every option of its format, defaults filled.

    Refused (usage errors): a key that is unknown or does not apply to the format, a
    value its schema rejects, header false without names, and contradictory options.
    """
    if read is not None and not isinstance(read, Mapping):
        raise UsageError(f"read must be a mapping of options, not {type(read).__name__}",
                         file=written)
    read = dict(read or {})
    unknown = [key for key in read if key not in READ_KEYS]
    if unknown:
        raise UsageError(f"unknown read key {unknown[0]!r}; known: {', '.join(READ_KEYS)}",
                         file=written)
    fmt = format_of(written, read)
    misplaced = [key for key in read if fmt not in READ_KEYS[key].formats]
    if misplaced:
        applies = ", ".join(sorted(READ_KEYS[misplaced[0]].formats))
        raise UsageError(f"read.{misplaced[0]} does not apply to format {fmt} (only to "
                         f"{applies})", file=written)
    _check_schema(read, written)
    options = {key: read.get(key, spec.default) for key, spec in READ_KEYS.items()
               if fmt in spec.formats}
    options["format"] = fmt
    if fmt in DELIMITED:
        options["sep"] = read.get("sep", _default_sep(written, fmt))
        options["encoding"] = _encoding(options["encoding"], written)
    _check_together(options, written)
    return options


def _default_sep(written: str, fmt: str) -> str:
    suffix = PurePath(written).suffix.lower()
    by_suffix = {".csv": ",", ".tsv": "\t", ".txt": WHITESPACE, ".dat": WHITESPACE}
    return by_suffix.get(suffix, "," if fmt == "csv" else WHITESPACE)


def _encoding(name: str, written: str) -> str:
    """The codec to decode with: UTF-8 always drops a leading byte-order mark."""
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise UsageError(f"read.encoding {name!r} is not a known text encoding",
                         file=written) from None
    return "utf-8-sig" if codec == "utf-8" else codec


@functools.cache
def _validator() -> Any:
    from jsonschema import Draft202012Validator  # only when a read mapping is checked

    schema = {"type": "object",
              "properties": {key: dict(spec.schema) for key, spec in READ_KEYS.items()}}
    return Draft202012Validator(schema)


def _check_schema(read: Mapping[str, Any], written: str) -> None:
    error = next(_validator().iter_errors(read), None)
    if error is not None:
        key = error.path[0] if error.path else "read"
        raise UsageError(f"read.{key}: {error.message}", file=written)


def _check_together(options: Mapping[str, Any], written: str) -> None:
    """Rules between options, known before the file is opened."""
    if options.get("header") is False and not options.get("names"):
        raise UsageError("read.header is false, so read.names must name the columns",
                         file=written)
    if options["format"] in DELIMITED and options["decimal"] == options["sep"]:
        raise UsageError(f"read.decimal and read.sep are both {options['sep']!r}",
                         file=written)
    variables, names = options.get("variables"), options.get("names")
    if variables and any(isinstance(v, int) for v in variables) \
            and options["format"] not in POSITIONAL:
        raise UsageError(f"read.variables of a {options['format']} file are names, not "
                         "positions", file=written)
    if variables and names and options["format"] in CONTAINERS \
            and len(names) != len(variables):
        raise UsageError(f"read.names has {len(names)} names for {len(variables)} "
                         "read.variables", file=written)
