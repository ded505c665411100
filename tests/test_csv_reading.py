"""CSV cells as text: Arrow's reader gives pandas' cells, or leaves the file to pandas.

The joins read a CSV with Arrow's multithreaded reader (``tableio.csv_text_by_arrow``)
and fall back to pandas (``csv_text_by_pandas``) where pandas' rules are the ones users
know; on every file both read, they must give the same cells.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer import tableio
from materializer.errors import MaterializeError

FIELD = st.text(alphabet=['a', '1', ' ', '"', ',', '\n', '\r', 'é', '\t', '\\', '#', '\0',
                          "'", '\ufeff'], max_size=6)


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
       ending=st.sampled_from(["\n", "\r\n", ""]))
def test_arrow_reads_the_cells_pandas_reads_or_none(tmp_path_factory, rows, ending) -> None:
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_text("k,v\n" + "\n".join(",".join(row) for row in rows) + ending,
                    encoding="utf-8")
    try:
        fast, slow = both(path)
    except MaterializeError:
        return  # the header itself is refused (a repeated name), before either reader
    if fast is not None:
        assert fast == slow


@pytest.mark.parametrize(("text", "arrow_reads"), [
    ("\ufeffk,v\n1,2\n", True),            # a BOM
    ("\n\nk,v\n\n1,2\n\n", True),         # blank lines, before the header too
    ("k,v\r\n1,\r\n\r\n", True),         # CRLF, an empty cell is null
    ('k,v\n"x""y",2\n', False),           # quotes: pandas' rules (an open quote fails)
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
