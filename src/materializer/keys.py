"""Join keys: text as written, normalised the same way on both sides.

A key is a string or missing (``<NA>``): null, blank, or a regex that does not match
all mean "no key", never the text ``"None"`` or ``"nan"``. One rule for every path
(in memory, streamed, labels, scores): each value's text on its own, Unicode NFC,
then the path mode, then the regex. All steps are column-wide.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from materializer.errors import DataError, UsageError
from materializer.options import enable, shown
from materializer.packed import PackedText
from materializer.tableio import string_buffers

MOS_KEY_CANDIDATES = (
    "key", "clip_key", "clip_id", "video_id", "chug_video_id", "content_id", "clip_name",
    "file_name", "filename", "basename", "name", "src", "source", "src_path",
    "distorted_path", "dis_path", "path",
)
SCORE_KEY_CANDIDATES = (
    "clip_id", "video_id", "chug_video_id", "content_id", "file_name", "filename",
    "basename", "name", "distorted_path", "dis_path", "path",
)
PATHLIKE_MARKERS = ("path", "file", "name", "src")


def find_column(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    """The first candidate that matches a column case-insensitively (actual name)."""
    by_lower: dict[str, str] = {}
    for column in columns:
        by_lower.setdefault(str(column).lower(), column)
    for candidate in candidates:
        if candidate.lower() in by_lower:
            return by_lower[candidate.lower()]
    return None


def resolve_column(
    columns: Sequence[str], explicit: str | None, candidates: Sequence[str], flag: str,
    file: str,
) -> str:
    """An explicit column (must exist exactly) or the first inferred candidate."""
    if explicit:
        if explicit not in columns:
            raise UsageError(f"{flag} {explicit!r} is not present", file=file, column=explicit)
        return explicit
    found = find_column(columns, candidates)
    if found is None:
        raise UsageError(f"could not infer {flag}; tried: {', '.join(candidates)}", file=file)
    return found


def effective_mode(mode: str, column: str) -> str:
    """``auto`` is basename for path-like column names, raw otherwise."""
    if mode != "auto":
        return mode
    lowered = column.lower()
    return "basename" if any(marker in lowered for marker in PATHLIKE_MARKERS) else "raw"


def as_text(values: pd.Series | pa.ChunkedArray | pa.Array) -> pa.Array:
    """Key values as text, one value at a time; nulls and blanks become missing.

    A float prints without ``.0`` when it is a whole number (``101.0`` is ``101``, as
    the integer column it was before a null made it float) and as its shortest repr
    otherwise; an integer column's value prints its digits (never through a float, which
    a null in a pandas column would make it). The rule looks at each value alone, never
    at its neighbours, so a value has one text whichever batch or table it sits in.
    Text is trimmed and put in Unicode NFC (a macOS NFD file name matches the same name
    typed elsewhere), with Arrow's string kernels, column-wide.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and (pa.types.is_string(values.type)
                                         or pa.types.is_large_string(values.type)):
        return _blank_to_null(_nfc(pc.utf8_trim_whitespace(values.cast(pa.string()))))
    if isinstance(values, pa.Array) and pa.types.is_integer(values.type):
        return pc.cast(values, pa.string())  # its digits, with or without nulls beside it
    series = values if isinstance(values, pd.Series) else values.to_pandas()
    series = series.reset_index(drop=True)
    if pd.api.types.is_float_dtype(series.dtype):
        numbers = series.astype("float64")
        whole = (np.isfinite(numbers) & (numbers == np.floor(numbers))
                 & (numbers.abs() < 2.0**53)).to_numpy()
        text = numbers.astype("string").astype(object)
        text[whole] = numbers[whole].astype("int64").astype("string").astype(object)
        array = pa.array(text.where(series.notna(), None), type=pa.string())
    elif pd.api.types.is_integer_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        array = pc.cast(pa.array(series, from_pandas=True), pa.string())
    else:
        array = pa.array(series.astype(object).where(series.notna(), None)
                         .map(str, na_action="ignore"), type=pa.string())
    return _blank_to_null(_nfc(pc.utf8_trim_whitespace(array)))


def _nfc(text: pa.Array) -> pa.Array:
    """Unicode NFC; ASCII text is already in it (the common case, checked in one pass)."""
    if pc.all(pc.fill_null(pc.string_is_ascii(text), True)).as_py() is not False:
        return text
    return pc.utf8_normalize(text, form="NFC")


def _blank_to_null(text: pa.Array) -> pa.Array:
    """Empty strings as nulls; ``text`` itself when it has none (the byte lengths come
    from the offsets alone: a tenth of a copy of the column)."""
    blank = pc.equal(pc.binary_length(text), 0)
    if not pc.any(blank).as_py():
        return text
    return pc.if_else(blank, pa.scalar(None, pa.string()), text)


@dataclass(frozen=True)
class KeyColumn:
    """A normalised key column as codes into its distinct keys.

    A per-frame table repeats each clip's key hundreds of times; matching and counting
    on integer codes instead of a million Python strings keeps the join near the cost
    of reading the table. ``keys`` are the distinct keys (Arrow text) in order of first
    appearance, matched with Arrow's hash kernels; ``codes`` holds one position per row,
    -1 where the row has no key.
    """

    codes: np.ndarray
    keys: pa.Array
    given_hashes: np.ndarray | None = field(default=None, repr=False, compare=False)
    found: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    """Lookups made on these keys (an index's name -> each key's position in it), kept
    with them through the tally and the spill: the gate and pass two ask again."""

    @classmethod
    def empty(cls) -> KeyColumn:
        return cls(np.empty(0, dtype=np.intp), pa.array([], type=pa.string()))

    def __len__(self) -> int:
        return len(self.codes)

    @functools.cached_property
    def hashes(self) -> np.ndarray:
        """``text_hashes`` of the distinct keys: made once, shared by every lookup."""
        return text_hashes(self.keys) if self.given_hashes is None else self.given_hashes

    @functools.cached_property
    def uniques(self) -> np.ndarray:
        """The distinct keys as Python strings (for samples and pandas), built once."""
        return self.keys.to_numpy(zero_copy_only=False)

    @property
    def unkeyed(self) -> np.ndarray:
        """Rows without a key (null, blank, or the regex did not match)."""
        return self.codes < 0

    def to_series(self, index: pd.Index | None = None) -> pd.Series:
        keys = np.full(len(self.codes), None, dtype=object)
        present = ~self.unkeyed
        keys[present] = self.uniques[self.codes[present]]
        return pd.Series(keys, index=index, dtype=object)


def positions_in(keys: pa.Array, known: pa.Array) -> np.ndarray:
    """Where each of ``keys`` is in ``known`` (distinct keys), -1 where absent: one Arrow
    hash join, not an object-array indexer."""
    found = pc.index_in(keys, value_set=known)
    return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.intp, copy=False)


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xFF51AFD7ED558CCD),
        np.uint64(0xC4CEB9FE1A85EC53))
_TAIL = np.array([0, *((1 << (8 * n)) - 1 for n in range(1, 8)), (1 << 64) - 1],
                 dtype=np.uint64)  # the first n bytes of a little-endian word


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser (murmur3's), in place."""
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(33)
        h *= _MIX[1]
        h ^= h >> np.uint64(33)
        h *= _MIX[2]
        h ^= h >> np.uint64(33)
    return h


CHUNK = 1 << 20
"""Strings hashed or looked up in one NumPy step: a million keeps the temporaries of a
step (a few arrays of eight bytes a string) in cache-sized pieces however long the
column is, the difference between 2 and 7 GB at fifty million keys."""


def text_hashes(text: pa.Array) -> np.ndarray:
    """A 64-bit hash of each string's bytes, eight bytes per step for a million strings
    at once (a null hashes as the empty string). Only a prefilter: matches are checked
    by text."""
    text = text.cast(pa.string())
    return np.concatenate([_chunk_hashes(text.slice(at, CHUNK))
                           for at in range(0, len(text), CHUNK)] or [np.empty(0, np.uint64)])


def _chunk_hashes(text: pa.Array) -> np.ndarray:
    bounds, raw = string_buffers(text)
    raw, bounds = raw[bounds[0]:bounds[-1]], bounds - bounds[0]
    padded = np.zeros(len(raw) + 8, dtype=np.uint8)
    padded[:len(raw)] = raw
    words = np.lib.stride_tricks.as_strided(padded, shape=(len(raw) + 1, 8),
                                            strides=(1, 1)).view("<u8")[:, 0]
    start, left = bounds[:-1].copy(), bounds[1:] - bounds[:-1]
    end = len(raw)
    with np.errstate(over="ignore"):
        hashes = left.astype(np.uint64) * _MIX[0]
        for _ in range(-(-int(left.max(initial=0)) // 8)):
            # Strings already done keep their hash: it must not depend on the others.
            word = words[np.minimum(start, end)] & _TAIL[np.clip(left, 0, 8)]
            hashes = np.where(left > 0, _mix(hashes ^ word), hashes)
            start += 8
            left -= 8
    return _mix(hashes)


def encode(text: pa.Array, hashes: np.ndarray | None = None) \
        -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """``dictionary_encode`` on hashes: each row's code (-1 for null) into the distinct
    texts in order of first appearance, those texts, and their hashes.

    Hashing strings eight bytes a step and counting integers costs half of Arrow's
    string hash table, and the hashes are kept for the lookups that follow. A row whose
    hash repeats an earlier row's is checked by text; should two texts share a hash,
    Arrow's encoder numbers them instead."""
    if hashes is None:
        hashes = text_hashes(text)
    valid = None if text.null_count == 0 else pc.is_valid(text).to_numpy(zero_copy_only=False)
    rows = np.arange(len(text)) if valid is None else np.flatnonzero(valid)
    present = hashes if valid is None else hashes[valid]
    if _distinct(present):  # one row per clip: no hash table needed
        if valid is None:
            return rows, text, present
        codes = np.full(len(text), -1, dtype=np.intp)
        codes[rows] = np.arange(len(rows))
        return codes, text.filter(pa.array(valid)), present
    numbered = _by_hash(present, lambda a, b: pc.equal(text.take(pa.array(rows[a])),
                                                       text.take(pa.array(rows[b]))))
    if numbered is None:
        codes, keys = _numbered(text)
        return codes, keys, text_hashes(keys)
    found, first = numbered
    if valid is None:
        codes = found
    else:
        codes = np.full(len(text), -1, dtype=np.intp)
        codes[rows] = found
    return codes, text.take(pa.array(rows[first])), present[first]


def _by_hash(hashes: np.ndarray, same: Callable[[np.ndarray, np.ndarray], pa.Array]) \
        -> tuple[np.ndarray, np.ndarray] | None:
    """Values numbered by their hashes in order of first appearance: each value's number
    and each number's first value; None should a value whose hash repeats an earlier
    one's be another value (``same(a, b)``: whether the values at positions ``a`` equal
    those at ``b``, asked only of the repeats)."""
    codes, _ = _numbered(pa.array(hashes))
    first = first_rows(codes)
    if len(first) < len(codes):
        repeats = np.flatnonzero(first[codes] != np.arange(len(codes)))
        if not pc.all(same(repeats, first[codes[repeats]])).as_py():
            return None
    return codes, first


def _distinct(hashes: np.ndarray) -> bool:
    """Whether no two hashes are equal (then no two texts are): sorting integers costs a
    tenth of a hash table once they outgrow the cache."""
    ordered = np.sort(hashes)
    return not (ordered[1:] == ordered[:-1]).any()


def first_repeat(keys: pa.Array, hashes: np.ndarray) -> int | None:
    """The first of ``keys`` that an earlier one repeats, or None: told by their
    ``text_hashes`` alone unless two hashes are equal, and then by text."""
    if _distinct(hashes):
        return None
    codes, _ = _numbered(keys)
    again = np.flatnonzero(first_rows(codes)[codes] != np.arange(len(codes)))
    return int(again[0]) if len(again) else None


class KeyIndex:
    """Distinct keys (no nulls) looked up again and again: a label set, one lookup per
    streamed batch, or every key a stream has seen.

    ``index_in`` hashes its whole value set on every call, seconds per batch for ten
    million keys, and pandas' hash table of integers takes 1.4 s to build for as many.
    Here the keys' hashes (``text_hashes``) are sorted once, each carrying its key's
    position in its low bits (NumPy sorts ten million integers in about 0.1 s), and
    counted into buckets by their top bits: a lookup reads the few entries of its
    bucket. A hit is checked by full hash and then by text, so a hash collision can
    never match two keys. Should two indexed keys share a full hash, lookups fall back
    to ``index_in``.
    """

    def __init__(self, keys: pa.Array, hashes: np.ndarray | None = None,
                 name: str = "keys") -> None:
        self.keys, self.name = keys, name
        self._hashes = text_hashes(keys) if hashes is None else hashes
        self._low = np.uint64((1 << max(int(len(keys) - 1).bit_length(), 1)) - 1)
        entries = np.sort((self._hashes & ~self._low)
                          | np.arange(len(keys), dtype=np.uint64))
        bits = max(int(len(keys)).bit_length() - 1, 1)  # one or two entries a bucket
        self._shift = np.uint64(64 - bits)
        counts = np.bincount((entries >> self._shift).astype(np.intp), minlength=1 << bits)
        # Where each bucket starts: int32 for fewer than 2**31 keys (134 MB less at 50M).
        self._starts = np.zeros(len(counts) + 1,
                                dtype=np.int32 if len(keys) < 2**31 else np.int64)
        np.cumsum(counts, out=self._starts[1:])
        self._entries: np.ndarray | None = None if self._shares_a_hash(entries) else entries

    def _shares_a_hash(self, entries: np.ndarray) -> bool:
        """Whether two keys have one full hash: then they share the high bits too, so
        only entries whose high bits repeat a neighbour's are compared."""
        high = entries & ~self._low
        shared = np.flatnonzero(high[1:] == high[:-1])
        rows = (entries[np.union1d(shared, shared + 1)] & self._low).astype(np.intp)
        return len(np.unique(self._hashes[rows])) < len(rows)

    def lookup(self, keys: KeyColumn) -> np.ndarray:
        """``positions`` of a key column's distinct keys, made once per key column (and
        kept with it under this index's name)."""
        found = keys.found.get(self.name)
        if found is None:
            found = keys.found[self.name] = self.positions(keys.keys, keys.hashes)
        return found

    def unfound(self, keys: KeyColumn) -> np.ndarray:
        """Which indexed keys none of ``keys`` found (label rows or score records that
        no feature row has), from the lookup the join made anyway."""
        unfound = np.ones(len(self.keys), dtype=bool)
        found = self.lookup(keys)
        unfound[found[found >= 0]] = False
        return unfound

    def positions(self, keys: pa.Array, hashes: np.ndarray | None = None) -> np.ndarray:
        """Where each of ``keys`` is among the indexed keys, -1 where absent or null
        (``hashes``: their ``text_hashes``, if already made)."""
        entries = self._entries
        if entries is None:
            return positions_in(keys, self.keys)
        if hashes is None:
            hashes = text_hashes(keys)
        return np.concatenate([self._chunk(entries, keys.slice(at, CHUNK), hashes[at:at + CHUNK])
                               for at in range(0, len(keys), CHUNK)] or [np.empty(0, np.intp)])

    def _chunk(self, entries: np.ndarray, keys: pa.Array, hashes: np.ndarray) -> np.ndarray:
        """One piece: each hash against the entries of its bucket in turn (a step per
        entry, for the hashes still unfound), then every hit by text."""
        bucket = (hashes >> self._shift).astype(np.intp)
        at, end = self._starts[bucket], self._starts[bucket + 1]
        found = np.full(len(hashes), -1, dtype=np.intp)
        asking = np.flatnonzero(end > at)
        at = at[asking]
        while len(asking):
            rows = (entries[at] & self._low).astype(np.intp)
            hit = self._hashes[rows] == hashes[asking]
            found[asking[hit]] = rows[hit]
            at += 1
            going = ~hit & (at < end[asking])
            asking, at = asking[going], at[going]
        hit = np.flatnonzero(found >= 0)
        asked = keys if len(hit) == len(keys) else keys.take(pa.array(hit))  # all: as they are
        same = pc.equal(asked, self.keys.take(pa.array(found[hit])))
        found[hit[~pc.fill_null(same, False).to_numpy(zero_copy_only=False)]] = -1
        return found


class BatchMerges(NamedTuple):
    """What the merge check needs of one batch, made off the main thread: the hashes of
    its path keys, the first of its distinct texts to give each key (where, and packed),
    and each later text of a key with the key's first text."""

    hashes: np.ndarray
    first: np.ndarray
    first_texts: PackedText
    repeats: np.ndarray
    owners: pa.Array
    repeated: pa.Array

    @classmethod
    def of(cls, text: pa.Array, codes: np.ndarray, hashes: np.ndarray) -> BatchMerges:
        """From a batch's distinct texts and their path keys' codes (numbered in order of
        first appearance) and hashes."""
        first = first_rows(codes)  # first[k]: the first text of key k
        rows = np.flatnonzero(codes >= 0)
        repeats = rows[first[codes[rows]] != rows]
        return cls(hashes, first, PackedText.of(text.take(pa.array(first, type=pa.int64()))),
                   repeats, text.take(pa.array(first[codes[repeats]])),
                   text.take(pa.array(repeats)))


Prepared = tuple[KeyColumn, BatchMerges | None]
"""A batch's keys, and what the merge check needs of it (None in raw mode)."""


class KeyNormalizer:
    """Normalise the key column of one table, batch after batch.

    Steps, column-wide on Arrow kernels: text (``as_text``), then the path mode (basename
    or stem, splitting on ``/`` and ``\\``), then the side's regex if any (RE2, or
    Python ``re`` where only it gives Python's result; see ``regex_keys``). It also
    records raw keys that the path mode folds into one key (``/a/0001.mp4`` and
    ``/b/0001.mp4``), across batches: they may be different clips, see ``refuse_merges``.
    """

    def __init__(self, column: str, mode: str, regex: re.Pattern[str] | None) -> None:
        self.column, self.mode, self.regex = column, effective_mode(mode, column), regex
        if self.mode not in ("raw", "basename", "stem"):
            raise UsageError(f"unsupported key normalisation mode: {mode}")
        # Per batch so far (folded now and then): the hashes of its path-normalised keys,
        # the first text of each (packed: read only by a fold that finds a key again),
        # and where that came (``_place``). The keys are made again from their texts where
        # a fold must compare them: a clip's path key is not kept twice.
        self._firsts: list[tuple[np.ndarray, PackedText, np.ndarray]] = []
        self._folded = 0  # entries of ``_firsts`` known to share no key
        self._batches = 0
        self._merged: set[str] = set()
        # The first merge each check found: (its place, the two texts, the key).
        self._examples: list[tuple[int, str, str, str]] = []

    def __call__(self, values: pd.Series | pa.ChunkedArray | pa.Array) -> KeyColumn:
        return self.keep(self.prepare(values))

    def prepare(self, values: pd.Series | pa.ChunkedArray | pa.Array) -> Prepared:
        """The keys of ``values`` and what the merge check needs of them: the work of
        one batch, touching no state, so a thread can do it while ``keep`` takes the
        batch before."""
        raw_codes, distinct = _factorize(values)
        text = as_text(distinct)
        path_keys = self._path_mode(text)
        keys = path_keys if self.regex is None else \
            _blank_to_null(pc.utf8_trim_whitespace(regex_keys(path_keys, self.regex)))
        encoded = encode(keys)
        merges = None
        if self.mode != "raw":  # a merge is the path mode's doing; the regex's is asked for
            codes, _, hashes = encoded if self.regex is None else encode(path_keys)
            merges = BatchMerges.of(text, codes, hashes)
        return _recode(raw_codes, *encoded), merges

    def keep(self, prepared: Prepared) -> KeyColumn:
        """A prepared batch's keys, its merges recorded (batches in stream order)."""
        keys, merges = prepared
        if merges is not None:
            self._track_merges(merges)
        return keys

    def _path_mode(self, text: pa.Array) -> pa.Array:
        """Basename, then stem, splitting on both separators."""
        if self.mode == "raw":
            return text
        return _blank_to_null(pc.utf8_trim_whitespace(path_part(text, self.mode == "stem")))

    def _track_merges(self, merges: BatchMerges) -> None:
        """A key's second, different text is a merge: within the batch now; across
        batches by the hashes of their keys, then the first texts of a key that comes
        again (``_fold``)."""
        if len(merges.repeats):  # texts that share a key with an earlier text of the batch
            self._clash(self._place(merges.repeats), merges.owners, merges.repeated)
        self._firsts.append((merges.hashes, merges.first_texts, self._place(merges.first)))
        self._batches += 1
        if len(self._firsts) - self._folded > FOLD_BATCHES:
            self._fold()

    def _fold(self) -> None:
        """Each key's first text in later batches against its first text of all: one
        numbering of the keys kept so far, which then shrink to the first of each (so a
        stream of many batches keeps one entry per key). Batches that share no key (one
        row per clip) are told by their hashes alone, and stay as they are."""
        if len(self._firsts) < 2 or self._folded == len(self._firsts):
            return
        hashes = np.concatenate([h for h, _, _ in self._firsts])
        self._folded = len(self._firsts)
        if _distinct(hashes):  # no key in two batches: nothing to compare or drop
            return
        texts = pa.concat_arrays([t.unpack() for _, t, _ in self._firsts])
        places = np.concatenate([p for _, _, p in self._firsts])
        self._folded = 1
        codes, first = self._key_codes(texts, hashes)
        if len(first) == len(codes):  # one entry, each key in it once
            self._firsts = [(hashes, PackedText.of(texts), places)]
            return
        later = np.ones(len(codes), dtype=bool)
        later[first] = False
        later = np.flatnonzero(later)
        self._clash(places[later], texts.take(pa.array(first[codes[later]])),
                    texts.take(pa.array(later)))
        self._firsts = [(hashes[first], PackedText.of(texts.take(pa.array(first))),
                         places[first])]

    def _key_codes(self, texts: pa.Array, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The number of each text's path key, in order of first appearance, and each
        number's first text, from the keys' hashes: the keys are made again from the
        texts only where a hash repeats, to check that the key does too (every key,
        should two share a hash)."""
        numbered = _by_hash(hashes, lambda a, b: pc.equal(
            self._path_mode(texts.take(pa.array(a))), self._path_mode(texts.take(pa.array(b)))))
        if numbered is not None:
            return numbered
        codes = _numbered(self._path_mode(texts))[0]
        return codes, first_rows(codes)

    def _place(self, texts: np.ndarray) -> np.ndarray:
        """Where texts of this batch came in the stream, in order: the batch, then the
        text's place among the batch's distinct texts (which keep the rows' order)."""
        return (np.int64(self._batches) << np.int64(32)) | texts.astype(np.int64)

    def _clash(self, places: np.ndarray, owner: pa.Array, mine: pa.Array) -> None:
        """Record raw texts (``mine``) that differ from the earlier text (``owner``) of
        their key; ``places``: where each of ``mine`` came."""
        differ = pc.fill_null(pc.not_equal(owner, mine), False)
        owner, mine = owner.filter(differ), mine.filter(differ)
        if len(owner):
            merged = self._path_mode(mine).to_pylist()
            self._merged.update(merged)
            places = places[differ.to_numpy(zero_copy_only=False)]
            at = int(np.argmin(places))
            self._examples.append((int(places[at]), owner[at].as_py(), mine[at].as_py(),
                                   merged[at]))

    @property
    def merged(self) -> set[str]:
        """Every key that two raw texts became, over all batches so far."""
        self._fold()
        return self._merged

    @property
    def example(self) -> tuple[str, str, str] | None:
        """The first merge in stream order: two texts and the key both became."""
        self._fold()
        return min(self._examples)[1:] if self._examples else None

    def refuse_merges(self, allow: bool, file: str) -> None:
        """Fail on the first two raw keys that became one, unless merging is allowed.

        This ends the check, after the table's last batch: what it kept of each clip
        (its key's hash, its packed first text and its place) is let go before the gate
        and the write; ``merged`` stays as found."""
        example = self.example
        self._firsts, self._folded = [], 0
        if example is None or allow:
            return
        first, second, key = example
        raise DataError(
            f"keys {first!r} and {second!r} both become {key!r} under key_normalize "
            f"{self.mode}, so two clips would share one label; use {shown('key_normalize')} "
            f"raw, or {enable('allow_key_merge')} if they are one clip", file=file,
            column=self.column)


_SEPARATORS = (ord("/"), ord("\\"))


def path_part(text: pa.Array, stem: bool) -> pa.Array:
    """Each path's last part (trailing separators dropped), without its last extension
    when ``stem``: ``a/b.mp4`` is ``b.mp4`` or ``b``, ``.hidden`` keeps its name.

    On the string buffers with NumPy: a separator or dot is one byte in UTF-8, never part
    of another character, so each key is a byte range of its path; the ranges are
    gathered into a new array in one pass. The rare column with a trailing separator
    takes the same rule on RE2 kernels."""
    text = text.cast(pa.string())
    bounds, raw = string_buffers(text)
    start, end = bounds[:-1], bounds[1:]
    separator = (raw == _SEPARATORS[0]) | (raw == _SEPARATORS[1])
    filled = end > start
    if separator[end[filled] - 1].any():
        return _path_part_by_regex(text, stem)
    start = np.maximum(start, _after_last(np.flatnonzero(separator), start, end))
    if stem:  # the last dot after the name's first byte
        dot = _after_last(np.flatnonzero(raw == ord(".")), start + 1, end) - 1
        end = np.where(dot > start, dot, end)
    lengths = end - start
    new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    edges = np.zeros(len(raw) + 1, dtype=np.int8)  # +1 where a kept range starts, -1 after
    filled = lengths > 0
    edges[start[filled]] += 1
    edges[end[filled]] -= 1
    kept = np.cumsum(edges[:-1], dtype=np.int8).view(bool)
    valid = None if text.null_count == 0 else pa.py_buffer(np.packbits(
        pc.is_valid(text).to_numpy(zero_copy_only=False), bitorder="little"))
    return pa.Array.from_buffers(pa.string(), len(text), [
        valid, pa.py_buffer(new_offsets), pa.py_buffer(raw[kept])])


def _after_last(positions: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """One past the last of the sorted byte ``positions`` within [start, end) of each
    string; ``start`` where there is none."""
    last = np.searchsorted(positions, end) - 1
    found = positions[np.maximum(last, 0)] if len(positions) else np.zeros_like(start)
    return np.where((last >= 0) & (found >= start), found + 1, start)


def _path_part_by_regex(text: pa.Array, stem: bool) -> pa.Array:
    keys = pc.replace_substring_regex(text, r"[/\\]+$", "")
    keys = pc.replace_substring_regex(keys, r"(?s)^.*[/\\]", "")
    return pc.replace_substring_regex(keys, r"(?s)^(.+)\.[^.]*$", r"\1") if stem else keys


FOLD_BATCHES = 64
"""Batches whose keys the merge check keeps before it folds them (see ``_fold``)."""


def first_rows(codes: np.ndarray) -> np.ndarray:
    """The first row of each code, for codes numbered in order of first appearance
    (a ``dictionary_encode``): where a code exceeds every code before it."""
    before = np.maximum.accumulate(np.concatenate([[-1], codes]))[:-1]
    return np.flatnonzero(codes > before)


def _recode(raw_codes: np.ndarray | None, key_codes: np.ndarray, keys: pa.Array,
            hashes: np.ndarray) -> KeyColumn:
    """Row codes into the distinct normalised keys (missing keys become -1); no
    ``raw_codes``: each row was its own raw value."""
    if raw_codes is None:
        return KeyColumn(key_codes, keys, hashes)
    codes = np.full(len(raw_codes), -1, dtype=np.intp)
    present = raw_codes >= 0
    codes[present] = key_codes[raw_codes[present]]
    return KeyColumn(codes, keys, hashes)


def _factorize(values: pd.Series | pa.ChunkedArray | pa.Array) \
        -> tuple[np.ndarray | None, pa.Array | pd.Series]:
    """Codes per row (-1 for null) and the distinct raw values they point to; no codes
    for a column normalised as it is (each row its own value, nulls included).

    Arrow's hash kernel for Arrow columns and pandas columns of one type; a column of
    mixed Python types (JSON keys holding numbers and text) goes through pandas."""
    if isinstance(values, pd.Series):
        try:
            values = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
            return codes, pd.Series(uniques, dtype=object)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else \
            pa.array([], type=values.type)
    if pa.types.is_large_string(values.type):  # pandas 3's text, polars' parquet: as text
        values = values.cast(pa.string())
    if isinstance(values, pa.DictionaryArray):  # a parquet text column read as such
        # Number the entries the rows use, in order of first use: one hash pass over
        # integers. Duplicate entries (a dictionary may hold some) are not merged here;
        # they become one key when the normalised keys are encoded.
        codes, used = _numbered(values.indices)
        return codes, values.dictionary.take(used)
    if mostly_distinct(values):  # one row per clip: hashing would find nothing to share
        return None, values
    return _numbered(values)


def _numbered(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each row's number among the distinct values, in order of first appearance (-1 for
    null), and those values, by Arrow's hash kernel: 0.6 to 0.7x the time of pandas'
    factorize on ten million 64-bit hashes."""
    encoded = pc.dictionary_encode(values)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return codes.astype(np.intp, copy=False), encoded.dictionary


def mostly_distinct(values: pa.Array) -> bool:
    """Whether fewer than half the rows repeat the row before: a table with one row per
    clip, where normalising every row costs less than hashing them to share the work.
    (Frames of a clip sit together; the answer changes only the speed, never a key.)"""
    if len(values) < 2 or not pa.types.is_string(values.type):
        return False
    repeats = pc.sum(pc.equal(values.slice(1), values.slice(0, len(values) - 1))).as_py()
    return 2 * (repeats or 0) < len(values)


@functools.lru_cache(maxsize=64)
def re2_form(pattern: str, flags: int, groups: int) -> str | None:
    """``pattern`` for RE2's ``extract_regex``, its groups named ``g1``, ``g2``, ... (the
    whole pattern is ``g1`` if it has none), so that ``g1`` of the first match is
    Python's pick (group 1 of ``re.search``, else the whole match); or None when only
    Python ``re`` gives Python's result: RE2 cannot compile it (look-around,
    backreferences, ...) or it holds a construct that means something else there
    (``\\s``, ``{,n}``, POSIX classes, ``\\Z``). Used on ASCII keys only, where ``\\d``,
    ``\\w`` and ``\\b`` agree.
    """
    if flags & ~(re.UNICODE | re.IGNORECASE) or any(
            token in pattern for token in (r"\s", r"\S", "[:", r"\Z", "{,", "(?#")):
        return None
    named, count = _named_groups(pattern) if groups else (f"(?P<g1>{pattern})", 1)
    if count != max(groups, 1):  # a pattern the scan below reads otherwise than re
        return None
    try:
        pc.extract_regex(pa.array([""]), named)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return named


def _named_groups(pattern: str) -> tuple[str, int]:
    """``pattern`` with each capturing group named ``g1``, ``g2``, ... in order, and how
    many there are: a ``(`` opens one unless it is escaped, in a character class, or
    followed by ``?`` (save ``(?P<name>``)."""
    out: list[str] = []
    at, count, in_class = 0, 0, False
    while at < len(pattern):
        step = 2 if pattern[at] == "\\" else 1
        part = pattern[at:at + step]
        if step == 1 and in_class:
            in_class = part != "]"
        elif part == "[":  # a "]" first in the class (after any "^") is itself
            in_class = True
            first = at + 1 + pattern.startswith("^", at + 1)
            step = first - at + pattern.startswith("]", first)
            part = pattern[at:at + step]
        elif part == "(" and (not pattern.startswith("?", at + 1)
                              or pattern.startswith("?P<", at + 1)):
            count += 1
            step = pattern.index(">", at) + 1 - at if pattern.startswith("?P<", at + 1) else 1
            part = f"(?P<g{count}>"
        out.append(part)
        at += step
    return "".join(out), count


def regex_keys(keys: pa.Array, regex: re.Pattern[str]) -> pa.Array:
    """Group 1 of the first match (or the whole match) of every key; no match, no key
    (blank or null: the caller makes blanks null).

    RE2 on Arrow where it gives Python's result (ASCII keys, a pattern ``re2_form``
    accepts); Python ``re`` for the other keys, so results never depend on the engine.
    One RE2 search a key: a search finds the span with RE2's DFA and reads the groups
    only there, half the time of a replace that spans the whole key.
    """
    form = re2_form(regex.pattern, regex.flags, regex.groups)
    if form is None:
        return _python_regex(keys, regex)
    ascii_keys = pc.fill_null(pc.string_is_ascii(keys), True)
    picked = pc.struct_field(pc.extract_regex(keys, form), [0])  # null where none matched
    if pc.all(ascii_keys).as_py():
        return picked
    others = pc.invert(ascii_keys)
    return pc.replace_with_mask(picked, others, _python_regex(keys.filter(others), regex))


def _python_regex(keys: pa.Array, regex: re.Pattern[str]) -> pa.Array:
    """The reference rule, one ``re.search`` per distinct key."""
    search = regex.search

    def pick(text: str) -> str | None:
        found = search(text)
        if found is None:
            return None
        return found.group(1) if regex.groups else found.group(0)

    picked = [None if text is None else pick(text) for text in keys.to_pylist()]
    return pa.array(picked, type=pa.string())
