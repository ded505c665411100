"""CSV cells as text: Arrow's reader gives pandas' cells, or leaves the file to pandas.

The joins read a CSV with Arrow's multithreaded reader (``tableio.csv_text_by_arrow``)
and fall back to pandas (``csv_text_by_pandas``) where pandas' rules are the ones users
know; on every file both read, they must give the same cells.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer import tableio
from materializer.errors import MaterializeError

TEXT = st.text(alphabet=['a', '1', ' ', '"', ',', '\n', '\r', 'é', '\t', '\\', '#', '\0',
                         "'", '\ufeff'], max_size=6)
# A cell as written: anything, or quoted the RFC 4180 way (which the fast path reads).
FIELD = st.one_of(TEXT, TEXT.map(lambda text: '"' + text.replace('"', '""') + '"'))


def both(path: Path) -> tuple[list | None, list | str]:
    header = tableio._csv_columns(path, path.name)
    fast = tableio.csv_text_by_arrow(path, header)
    try:
        slow = [c.to_pylist() for c in tableio.csv_text_by_pandas(path, path.name)]
    except (MaterializeError, pd.errors.ParserError) as exc:
        slow = f"error: {exc}"
    return (None if fast is None else [c.to_pylist() for c in fast]), slow


@settings(max_examples=1500, deadline=None)
@given(rows=st.lists(st.lists(FIELD, min_size=2, max_size=3), min_size=1, max_size=6),
       ending=st.sampled_from(["\n", "\r\n", ""]), block=st.integers(1, 7))
def test_arrow_reads_the_cells_pandas_reads_or_none(tmp_path_factory, rows, ending,
                                                    block: int) -> None:
    """On any file; and the file's quoting is told alike in blocks of any size (a quote
    or a carriage return at a block's edge looks into the blocks on either side)."""
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_text("k,v\n" + "\n".join(",".join(row) for row in rows) + ending,
                    encoding="utf-8")
    whole = tableio._quoting(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tableio, "_BLOCK", block)
        assert tableio._quoting(path) == whole
    try:
        fast, slow = both(path)
    except MaterializeError:
        return  # the header itself is refused (a repeated name), before either reader
    if fast is not None:
        assert fast == slow



def test_well_formed_files_are_read_by_arrow_with_pandas_cells(tmp_path: Path) -> None:
    """Files quoted the RFC 4180 way (quotes, commas, CRLF and newlines inside quoted
    cells, empty cells) take the fast path, and give pandas' cells: so the property
    above compares the two readers on such files, not only on files Arrow leaves."""
    rng = np.random.default_rng(13)
    alphabet = np.array(list('ab1 é,"\n') + ["\r\n"])
    for number in range(200):
        rows = []
        for _ in range(rng.integers(1, 6)):
            cells = []
            for _ in range(3):
                text = "".join(rng.choice(alphabet, rng.integers(0, 5)))
                plain = not any(c in text for c in ',"\n\r') and text.strip() == text
                cells.append(text if plain and rng.random() < 0.5
                             else '"' + text.replace('"', '""') + '"')
            rows.append(",".join(cells))
        path = tmp_path / f"t{number}.csv"
        path.write_bytes(("k,v,w\r\n" + "\r\n".join(rows) + "\r\n").encode())
        fast, slow = both(path)
        assert fast is not None and fast == slow, path.read_bytes()


@pytest.mark.parametrize(("text", "arrow_reads"), [
    ("\ufeffk,v\n1,2\n", True),            # a BOM
    ("\n\nk,v\n\n1,2\n\n", True),         # blank lines, before the header too
    ("k,v\r\n1,\r\n\r\n", True),         # CRLF, an empty cell is null
    ('k,v\n"x""y","a\nb"\n"",3\n', True),  # quotes around whole fields
    ('k,v\nx"y,2\n', False),               # a quote inside a field: pandas' rules
    ('k,v\n1,2\n"3,4\n', False),           # a quote left open: pandas refuses the file
    ("k,v\n  \n1,2\n", False),            # a line of spaces: pandas skips it
    ("k,v\n1\n", False),                  # a short row: pandas fills it with nulls
    ("k,,v\n1,2,3\n", False),             # an empty name: pandas calls it Unnamed: 1
    ("k\n  \n1\n", False),                # one column: pandas skips the line of spaces
])
def test_which_files_arrow_reads(tmp_path: Path, text: str, arrow_reads: bool) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    fast, slow = both(path)
    assert (fast is not None) is arrow_reads
    if arrow_reads:
        assert fast == slow


# --- JSON lines: Arrow's reader gives the Python parser's table, or leaves the file ----

JSON_VALUE = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                       st.floats(allow_nan=False, allow_infinity=False), TEXT,
                       st.sampled_from(["2024-01-02", "2024-01-02T10:00:00", "007"]),
                       st.lists(st.integers(0, 3), max_size=2))


@settings(max_examples=600, deadline=None)
@given(rows=st.lists(st.dictionaries(st.sampled_from(["k", "v", "w"]), JSON_VALUE,
                                     max_size=3), min_size=1, max_size=6),
       ending=st.sampled_from(["\n", "\r\n"]))
def test_arrow_reads_the_json_lines_python_reads_or_none(tmp_path_factory, rows,
                                                         ending) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "t.jsonl"
    path.write_text("".join(json.dumps(row) + ending for row in rows), encoding="utf-8")
    fast = tableio.jsonl_by_arrow(path, ["k"])
    if fast is not None:
        slow = tableio.json_by_python(path, path.name, ["k"])
        assert fast.schema.equals(slow.schema) and fast.to_pylist() == slow.to_pylist()


def test_flat_json_lines_take_the_fast_path(tmp_path: Path) -> None:
    """Rows of text, numbers, booleans and nulls (keys as text) are read by Arrow, with
    the Python parser's types and values; a key written as a number is not."""
    path = tmp_path / "t.jsonl"
    path.write_text('{"k": "a", "x": 1, "y": 0.5, "b": true}\n\n'
                    '{"k": "b", "x": null, "y": 2, "z": "n"}\r\n', encoding="utf-8")
    fast = tableio.jsonl_by_arrow(path, ["k"])
    assert fast is not None
    slow = tableio.json_by_python(path, path.name, ["k"])
    assert fast.schema.equals(slow.schema) and fast.to_pylist() == slow.to_pylist()
    path.write_text('{"k": 7, "x": 1}\n', encoding="utf-8")
    assert tableio.jsonl_by_arrow(path, ["k"]) is None
    assert tableio.json_by_python(path, path.name, ["k"]).column("k").to_pylist() == ["7"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_json_feature_table_is_read_once(tmp_path: Path, monkeypatch, suffix: str) -> None:
    """Its column names come from the one read that gives the data (a JSON file has no
    header to read apart), and the join is the same."""
    from materializer.mos import materialize_mos_labels
    from materializer.provenance import RunContext

    rows = [{"clip_id": "007", "x": 1.5}, {"clip_id": "8", "x": 2.0}]
    (tmp_path / f"f{suffix}").write_text(
        "".join(json.dumps(row) + "\n" for row in rows) if suffix == ".jsonl"
        else json.dumps(rows), encoding="utf-8")
    (tmp_path / "l.csv").write_text("clip_id,mos\n007,3.5\n8,4.0\n", encoding="utf-8")
    reads = []
    read = tableio.read_table
    monkeypatch.setattr(tableio, "read_table",
                        lambda path, *args, **kw: reads.append(path.name) or read(path, *args,
                                                                                 **kw))
    audit = materialize_mos_labels(f"f{suffix}", ["l.csv"], "o.parquet",
                                   run=RunContext("test", base_dir=str(tmp_path)))
    assert reads.count(f"f{suffix}") == 1
    assert audit["matched_rows"] == 2
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out["clip_id"].tolist() == ["007", "8"] and out["mos"].tolist() == [3.5, 4.0]


# The typing rule as written in ``type_csv_column``'s docstring, cell by cell.
INTEGER = re.compile(r"-?(0|[1-9][0-9]*)", re.ASCII)
DECIMAL = re.compile(r"-?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
                     r"|-?(nan|inf|infinity)", re.ASCII | re.IGNORECASE)
NUMBER_LIKE = st.one_of(
    st.from_regex(r"\A-?(0|[1-9][0-9]{0,20})\Z"),
    st.from_regex(r"\A-?([0-9]{1,4}(\.[0-9]{0,4})?|\.[0-9]{1,3})([eE][+-]?[0-9]{1,3})?\Z"),
    st.sampled_from(["+1", "007", "-01", "0x1F", "-0x1", "+.5", "00.5", "-00", "0.", "-0",
                     "1e400", "NaN", "-inf", "Infinity", "infinit", "1 ", " 1", "1_0",
                     "0\x00", "ınf", "١"]),
    st.text(alphabet="0123456789+-.eExabfinIty \t\x00", max_size=6))


def by_the_rule(cells: list[str | None]) -> tuple[str, list]:
    present = [c for c in cells if c is not None]
    if present and all(INTEGER.fullmatch(c) for c in present) \
            and all(-2**63 <= int(c) < 2**63 for c in present):
        return "int64", [None if c is None else int(c) for c in cells]
    if present and all(DECIMAL.fullmatch(c) for c in present):
        return "double", [None if c is None else float(c) for c in cells]
    return "string", cells


@settings(max_examples=1500, deadline=None)
@given(cells=st.lists(st.one_of(NUMBER_LIKE, st.none()), min_size=1, max_size=12),
       cut=st.integers(0, 12))
def test_csv_typing_follows_the_written_rule(cells: list[str | None], cut: int) -> None:
    """The cast and first-byte check give what the rule's regexes give, on chunked
    columns with nulls (a zero's sign kept: -0 and -0.0 are written that way)."""
    import pyarrow as pa

    column = pa.chunked_array([pa.array(cells[:cut], pa.string()),
                               pa.array(cells[cut:], pa.string())])
    typed = tableio.type_csv_column(column)
    kind, values = by_the_rule(cells)
    assert str(typed.type) == kind
    got = typed.to_pylist()
    if kind == "double":
        assert [None if v is None else ("nan" if v != v else repr(v)) for v in got] == \
            [None if v is None else ("nan" if v != v else repr(v)) for v in values]
    else:
        assert got == values
