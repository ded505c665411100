"""Packed text gives back the array it was made of."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer.packed import PackedText


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.one_of(st.none(), st.text(max_size=12)), max_size=40),
       skip=st.integers(0, 3), keep=st.integers(0, 40))
def test_packed_text_unpacks_to_the_same_strings(texts: list, skip: int, keep: int) -> None:
    """Nulls, empty strings and any Unicode, from a slice of a larger array too."""
    column = pa.array(["pad"] * skip + texts + ["tail"], type=pa.string()).slice(skip, keep)
    unpacked = PackedText.of(column).unpack()
    unpacked.validate(full=True)
    assert unpacked.to_pylist() == column.to_pylist()
