"""The key engine on Arrow kernels gives exactly what the Python rules give.

Regex keys run on RE2 where it gives Python's result and on Python ``re`` elsewhere
(``keys.regex_keys``); key tables of every shape (no match, all null, one key for a
million rows, a million keys) give the coverage a plain pandas computation gives.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer import keys
from materializer.errors import DataError

REGEXES = [
    r"([0-9]+)", r"^(.*?)(?:NEW)?$", r"([0-9]{3})?x", r"[a-z]+", r"(\d+)_(\w+)", r"(?i)new",
    r"(a|ab)(c|bcd)?", r"^$", r"(?:x)*", r"\bfoo\b", r"[^/]+$", r"([0-9]{10})\.mp4$",
    r"^([^_]+)_", r"(.)(.)?$", r"[.]", r"\d{2,}",
    # Parentheses that open no group, and a named one: the groups RE2 is given are named.
    r"(?P<id>\d+)_(x)?", r"[(]a(b)?", r"\((\d+)\)", r"[]a](x|y)",
    # Only Python re can run these (RE2 has no look-around or backreferences; \s and
    # {,n} mean something else there): the engine must fall back, with equal results.
    r"(?<=_)\d+", r"(\w)\1", r"\s+(\S+)", r"x{,2}y", r"(?=a)\w",
]
ALPHABET = st.sampled_from(list("abcxyz019_./\\- NEW()]") + ["é", "٣", "ﬁ", "İ", "\u00a0", "foo"])


def python_rule(regex: re.Pattern[str], text: str | None) -> str | None:
    """The documented rule: group 1 of the first match, else the whole match; a blank
    result (or no match) is no key."""
    if text is None:
        return None
    found = regex.search(text)
    picked = None if found is None else (found.group(1) if regex.groups else found.group(0))
    return picked or None


def engine(regex: re.Pattern[str], texts: list[str | None]) -> list[str | None]:
    return [value or None for value in
            keys.regex_keys(pa.array(texts, type=pa.string()), regex).to_pylist()]


@pytest.mark.parametrize("pattern", REGEXES)
@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.one_of(st.none(), st.lists(ALPHABET, max_size=8).map("".join)),
                      max_size=30))
def test_regex_keys_equal_the_python_rule(pattern: str, texts: list[str | None]) -> None:
    regex = re.compile(pattern)
    assert engine(regex, texts) == [python_rule(regex, t) for t in texts]


def test_both_engines_are_exercised() -> None:
    """The plain patterns run on RE2, the others on Python re (else the test above
    would compare Python with itself)."""
    fast = [p for p in REGEXES if keys.re2_form(p, re.compile(p).flags, re.compile(p).groups)]
    assert len(fast) == 20 and set(REGEXES) - set(fast) == set(REGEXES[20:])


def test_non_ascii_keys_take_the_python_rule_where_classes_differ() -> None:
    """``\\d`` is any Unicode digit for Python, ASCII for RE2: a key with an
    Arabic-Indic digit gets Python's answer."""
    regex = re.compile(r"(\d+)")
    assert engine(regex, ["clip_٣٤", "clip_34", None]) == ["٣٤", "34", None]


# --- tables of every shape: the audit's coverage equals pandas on the same keys ---------


def coverage_by_pandas(features: pd.Series, labels: pd.Series, regex: str | None) -> dict:
    extract = (lambda s: s.str.extract(regex, expand=False)) if regex else (lambda s: s)
    feature_keys = extract(features.str.strip()).replace("", np.nan)
    label_keys = set(labels.dropna())
    matched = feature_keys.isin(label_keys)
    return {"input_rows": len(features), "matched_rows": int(matched.sum()),
            "unkeyed_rows": int(feature_keys.isna().sum()),
            "total_feature_keys": int(feature_keys.nunique())}


SHAPES = {
    "regex-matches-nothing": (lambda n: [f"clip_{i}" for i in range(n)], r"(\d{12})"),
    "all-null": (lambda n: [None] * n, None),
    "one-key-for-a-million-rows": (lambda n: ["clip_0"] * n, None),
    "a-million-keys": (lambda n: [f"clip_{i}" for i in range(n)], None),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stream", ["never", "always"])
def test_tables_of_every_shape_count_like_pandas(tmp_path: Path, mos, monkeypatch, shape: str,
                                                 stream: str) -> None:
    make, regex = SHAPES[shape]
    rows = 1_000_000
    features = pd.Series(make(rows), dtype=object)
    pd.DataFrame({"clip_id": features, "x": np.arange(rows, dtype=np.float32)}) \
        .to_parquet(tmp_path / "f.parquet", index=False)
    labels = pd.Series([f"clip_{i}" for i in range(0, rows, 2)])
    pd.DataFrame({"clip_id": labels, "mos": 3.0}).to_csv(tmp_path / "l.csv", index=False)
    monkeypatch.setenv("MATERIALIZER_STREAM", stream)
    done = mos("--features", "f.parquet", "--labels", "l.csv", "--min-match-rate", "0",
               *(["--feature-key-regex", regex] if regex else []),
               "--out", "o.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "a.json").read_text())
    expected = coverage_by_pandas(features, labels, regex)
    assert {k: audit[k] for k in expected} == expected
    assert ("streamed" in audit) is (stream == "always")


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.one_of(st.none(), st.sampled_from(
    ["a/1.mp4", "b/1.mp4", "a/2.mp4", " a/2.mp4", "", "c/2.MP4", "x/é.mp4", "y/é.mp4"])),
    max_size=40), rows=st.integers(1, 7), mode=st.sampled_from(["basename", "stem"]),
    fold_batches=st.sampled_from([1, 2, 64]))
def test_a_stream_finds_the_merges_and_first_example_of_one_piece(
        texts: list, rows: int, mode: str, fold_batches: int) -> None:
    """The same column in batches of any size (a stream) or in one piece (in memory):
    the same merged keys, and the same first merge in row order for the error."""
    stream, piece = keys.KeyNormalizer("path", mode, None), keys.KeyNormalizer("path", mode, None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "FOLD_BATCHES", fold_batches)
        for at in range(0, len(texts), rows):
            stream(pa.array(texts[at:at + rows], type=pa.string()))
        piece(pa.array(texts, type=pa.string()))
        assert (stream.merged, stream.example) == (piece.merged, piece.example)


@pytest.mark.parametrize("fold_batches", [1, 3, 64])
def test_merges_are_found_across_many_batches_however_they_fold(monkeypatch,
                                                                 fold_batches: int) -> None:
    """Batches' keys are checked against each other when they fold (every few batches,
    and at the end); a text folding onto an earlier key later is still a merge, and a
    repeat of its own text is not, whenever the fold happens."""
    monkeypatch.setattr(keys, "FOLD_BATCHES", fold_batches)
    normalizer = keys.KeyNormalizer("path", "basename", None)
    for batch in range(6):
        normalizer(pa.array([f"a/{batch}-{i}.mp4" for i in range(4)]))
        normalizer(pa.array([f"a/{batch}-0.mp4"]))  # the same text again: no merge
    assert normalizer.merged == set()
    normalizer(pa.array(["b/0-1.mp4", "a/5-3.mp4"]))
    assert normalizer.merged == {"0-1.mp4"}
    assert normalizer.example == ("a/0-1.mp4", "b/0-1.mp4", "0-1.mp4")


# --- path parts on string buffers, hashed lookups: equal to the plain kernels -----------

PATH_TEXT = st.one_of(st.none(), st.lists(st.sampled_from(list("ab./\\ \n") + ["é", "ﬁ"]),
                                          max_size=10).map("".join))


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(PATH_TEXT, max_size=20), stem=st.booleans(), skip=st.integers(0, 3))
def test_path_parts_on_buffers_equal_the_regex_rule(texts, stem: bool, skip: int) -> None:
    """The NumPy path (``path_part``) and the RE2 one agree on every text, on a slice of
    an array too (buffers with an offset); both are basename/stem as pathlib splits."""
    column = pa.array(["x/y.z"] * skip + texts, type=pa.string()).slice(skip)
    assert keys.path_part(column, stem).to_pylist() == \
        keys._path_part_by_regex(column, stem).to_pylist()


@settings(max_examples=200, deadline=None)
@given(known=st.lists(st.text(max_size=6), unique=True, max_size=30),
       asked=st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=30),
       chunk=st.sampled_from([1, 4, keys.CHUNK]))
def test_hashed_lookups_equal_arrow_index_in(known: list[str], asked: list,
                                             chunk: int) -> None:
    """In pieces of any size (a long column is hashed and looked up a million at a time),
    the same positions and the same hashes."""
    whole = keys.text_hashes(pa.array(asked, type=pa.string()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "CHUNK", chunk)
        index = keys.KeyIndex(pa.array(known, type=pa.string()))
        probe = pa.array(asked, type=pa.string())
        expected = keys.positions_in(probe, index.keys)
        expected[pa.compute.is_null(probe).to_numpy(zero_copy_only=False)] = -1
        assert index.positions(probe).tolist() == expected.tolist()
        assert keys.text_hashes(probe).tolist() == whole.tolist()


def test_a_hash_shared_by_two_keys_never_matches_the_wrong_one(monkeypatch) -> None:
    """With a hash that only sees the length, ``abc`` and ``xyz`` collide: a lookup must
    still check the text (a probe that shares a hash is absent), and an index whose own
    keys collide answers by exact lookup."""
    monkeypatch.setattr(keys, "text_hashes", lambda text: pa.compute.utf8_length(
        text.cast(pa.string())).fill_null(0).to_numpy().astype(np.uint64))
    index = keys.KeyIndex(pa.array(["a", "abc", "abcdef"]))
    assert index.positions(pa.array(["xyz", "abc", "q", "zzzzzz"])).tolist() == [-1, 1, -1, -1]
    colliding = keys.KeyIndex(pa.array(["abc", "xyz"]))
    assert colliding.positions(pa.array(["xyz", "abc", "qqq"])).tolist() == [1, 0, -1]


# --- encoding on hashes: Arrow's dictionary_encode, whatever the hashes --------------------

ENCODE_TEXT = st.one_of(st.none(), st.sampled_from(["", "a", "b", "ab", "é", "a b", "0"]),
                        st.text(max_size=4))


def by_arrow(values: list) -> tuple[list[int], list[str]]:
    encoded = pa.compute.dictionary_encode(pa.array(values, type=pa.string()))
    return (pa.compute.fill_null(encoded.indices, -1).to_pylist(),
            encoded.dictionary.to_pylist())


def length_hashes(text: pa.Array) -> np.ndarray:
    """A hash that sees only the length: ``ab`` and ``é``... collide on purpose."""
    return pa.compute.utf8_length(text.cast(pa.string())).fill_null(0).to_numpy() \
        .astype(np.uint64)


@settings(max_examples=200, deadline=None)
@given(known=st.lists(st.text(max_size=4), unique=True, min_size=1, max_size=40),
       asked=st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=40))
def test_keys_whose_hashes_share_a_bucket_find_their_own(known: list[str],
                                                        asked: list) -> None:
    """The index buckets hashes by their top bits: a lookup must walk its bucket to the
    entry of its full hash, whatever its place there. Here each text's hash is its small
    number in a list of every text, so all keys share bucket 0."""
    numbers = {text: n for n, text in enumerate(sorted({*known, *filter(None, asked)}), 1)}

    def small(text: pa.Array) -> np.ndarray:
        return np.array([numbers.get(t, 0) for t in text.to_pylist()], dtype=np.uint64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keys, "text_hashes", small)
        index = keys.KeyIndex(pa.array(known, type=pa.string()))
        positions = index.positions(pa.array(asked, type=pa.string())).tolist()
    assert positions == [known.index(a) if a in known else -1 for a in asked]


@settings(max_examples=300, deadline=None)
@given(values=st.lists(ENCODE_TEXT, max_size=40), skip=st.integers(0, 2))
def test_encoding_on_hashes_equals_arrow(values: list, skip: int) -> None:
    """Codes (-1 for null) in order of first appearance, the distinct texts, and each
    text's hash, as ``dictionary_encode`` numbers them; on a sliced array too."""
    column = pa.array(["pad"] * skip + values, type=pa.string()).slice(skip)
    codes, distinct, hashes = keys.encode(column)
    assert (codes.tolist(), distinct.to_pylist()) == by_arrow(values)
    assert hashes.tolist() == keys.text_hashes(distinct).tolist()


@settings(max_examples=200, deadline=None)
@given(values=st.lists(ENCODE_TEXT, max_size=40))
def test_texts_that_share_a_hash_are_still_told_apart(values: list) -> None:
    """With the length as the hash, most distinct texts collide: the encoding must
    still be Arrow's, never two texts under one code."""
    column = pa.array(values, type=pa.string())
    codes, distinct, _ = keys.encode(column, length_hashes(column))
    assert (codes.tolist(), distinct.to_pylist()) == by_arrow(values)


def test_a_colliding_hash_neither_merges_keys_nor_hides_a_merge(monkeypatch) -> None:
    """Through the normaliser, the merge check across batches and the tally: keys
    that share a hash stay apart, and a real merge is still found."""
    from materializer.plan import KeyTally

    monkeypatch.setattr(keys, "text_hashes", length_hashes)
    normalizer, tally = keys.KeyNormalizer("path", "basename", None), KeyTally()
    for batch in (["a/abc", "a/xyz"], ["b/xyz", "a/qqq"], ["a/abc"]):
        tally.add(normalizer(pa.array(batch)))
    assert tally.distinct.keys.to_pylist() == ["abc", "xyz", "qqq"]
    assert normalizer.merged == {"xyz"}
    assert normalizer.example == ("a/xyz", "b/xyz", "xyz")


@pytest.mark.parametrize("fold_batches", [1, 2, 64])
def test_batches_that_share_no_key_fold_later_without_losing_a_merge(
        monkeypatch, fold_batches: int) -> None:
    """One row per clip: every check sees distinct hashes and keeps the batches as they
    are (a copy of them all would double the check's memory); a merge in a batch after
    that is still found, and the end of the check lets the batches go."""
    monkeypatch.setattr(keys, "FOLD_BATCHES", fold_batches)
    normalizer = keys.KeyNormalizer("path", "basename", None)
    for batch in range(3):
        normalizer(pa.array([f"a/{batch}-{i}.mp4" for i in range(5)]))
    assert normalizer.merged == set() and len(normalizer._firsts) == 3
    normalizer(pa.array(["b/1-4.mp4"]))
    assert normalizer.merged == {"1-4.mp4"}
    assert normalizer.example == ("a/1-4.mp4", "b/1-4.mp4", "1-4.mp4")
    normalizer.refuse_merges(True, "f.parquet")
    assert normalizer._firsts == [] and normalizer.merged == {"1-4.mp4"}
    with pytest.raises(DataError, match="'a/1-4.mp4' and 'b/1-4.mp4' both become"):
        normalizer.refuse_merges(False, "f.parquet")


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1),
                                 st.integers(2**53 - 2, 2**53 + 2)), max_size=30))
def test_an_integer_key_is_its_digits_whatever_sits_beside_it(values: list) -> None:
    """A clip id of an integer column is the same key in a batch with a null as in one
    without: its digits, never a float's text (``2**53 + 1`` has no float)."""
    expected = [None if v is None else str(v) for v in values]
    assert keys.as_text(pa.array(values, type=pa.int64())).to_pylist() == expected
    present = [v for v in values if v is not None]
    assert keys.as_text(pa.array(present, type=pa.int64())).to_pylist() == \
        [str(v) for v in present]
