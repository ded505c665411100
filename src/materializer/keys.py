"""Join keys: text as written, normalised the same way on both sides.

A key is a string or missing (``<NA>``): null, blank, or a regex that does not match
all mean "no key", never the text ``"None"`` or ``"nan"``. One rule for every path
(in memory, streamed, labels, scores): each value's text on its own, Unicode NFC,
then the path mode, then the regex. All steps are column-wide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from materializer.errors import DataError, UsageError
from materializer.options import enable, shown

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
    otherwise. The rule looks at each value alone, never at its neighbours, so a value
    has one text whichever batch or table it sits in. Text is trimmed and put in
    Unicode NFC (a macOS NFD file name matches the same name typed elsewhere), with
    Arrow's string kernels, column-wide.
    """
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
    return _blank_to_null(pc.utf8_normalize(pc.utf8_trim_whitespace(array), form="NFC"))


def _blank_to_null(text: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(pc.utf8_length(text), 0), pa.scalar(None, pa.string()), text)


@dataclass(frozen=True)
class KeyColumn:
    """A normalised key column as codes into its distinct keys.

    A per-frame table repeats each clip's key hundreds of times; matching and counting
    on integer codes instead of a million Python strings keeps the join near the cost
    of reading the table. ``uniques`` are the distinct keys in order of first
    appearance; ``codes`` holds one position per row, -1 where the row has no key.
    """

    codes: np.ndarray
    uniques: np.ndarray

    @classmethod
    def empty(cls) -> KeyColumn:
        return cls(np.empty(0, dtype=np.intp), np.empty(0, dtype=object))

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def unkeyed(self) -> np.ndarray:
        """Rows without a key (null, blank, or the regex did not match)."""
        return self.codes < 0

    def to_series(self, index: pd.Index | None = None) -> pd.Series:
        keys = np.full(len(self.codes), None, dtype=object)
        present = ~self.unkeyed
        keys[present] = self.uniques[self.codes[present]]
        return pd.Series(keys, index=index, dtype=object)


class KeyNormalizer:
    """Normalise the key column of one table, batch after batch, remembering text keys.

    Steps: text (``as_text``), then the path mode (basename or stem, splitting on ``/``
    and ``\\``), then the side's regex if any. The streaming path sees the same clips in
    every batch of both passes, so each distinct text value is normalised once per run.
    It also records raw keys that the path mode folds into one key (``/a/0001.mp4`` and
    ``/b/0001.mp4``): they may be different clips, see ``refuse_merges``.
    """

    def __init__(self, column: str, mode: str, regex: re.Pattern[str] | None) -> None:
        self.column, self.mode, self.regex = column, effective_mode(mode, column), regex
        if self.mode not in ("raw", "basename", "stem"):
            raise UsageError(f"unsupported key normalisation mode: {mode}")
        self._known_texts = pd.Index([], dtype=object)  # raw texts normalised so far
        self._known_keys = np.empty(0, dtype=object)  # and their keys
        self._owner_keys = pd.Index([], dtype=object)  # path-normalised keys seen so far
        self._owner_texts = np.empty(0, dtype=object)  # the first text of each
        self.merged: set[str] = set()
        self.example: tuple[str, str, str] | None = None

    def __call__(self, values: pd.Series | pa.ChunkedArray | pa.Array) -> KeyColumn:
        raw_codes, distinct = _factorize(values)
        if not isinstance(distinct.dtype, pd.StringDtype):
            return _recode(raw_codes, self._normalize(distinct))
        texts = distinct.to_numpy(dtype=object, na_value=None)
        if not len(self._known_texts):  # the first batch (or the whole table)
            self._known_texts, self._known_keys = pd.Index(texts), self._normalize(distinct)
            return _recode(raw_codes, self._known_keys)
        at = self._known_texts.get_indexer(texts)
        new = at < 0
        if new.any():
            self._known_keys = np.concatenate([self._known_keys,
                                               self._normalize(distinct[new])])
            self._known_texts = self._known_texts.append(pd.Index(texts[new]))
            at[new] = len(self._known_texts) - int(new.sum()) + np.arange(int(new.sum()))
        return _recode(raw_codes, self._known_keys[at])

    def _normalize(self, distinct: pd.Series) -> np.ndarray:
        text = as_text(distinct)
        keys = text
        if self.mode != "raw":  # RE2 kernels: basename, then stem, on both separators
            keys = pc.replace_substring_regex(text, r"[/\\]+$", "")
            keys = pc.replace_substring_regex(keys, r"^.*[/\\]", "")
            if self.mode == "stem":
                keys = pc.replace_substring_regex(keys, r"^(.+)\.[^.]*$", r"\1")
            keys = _blank_to_null(pc.utf8_trim_whitespace(keys))
            self._track_merges(text, keys)
        found = keys.to_numpy(zero_copy_only=False)
        if self.regex is None:
            return found
        picked = pd.Series(found, dtype=object).map(_regex_picker(self.regex),
                                                    na_action="ignore")
        return _blank_to_null(pc.utf8_trim_whitespace(
            pa.array(picked, type=pa.string(), from_pandas=True))).to_numpy(zero_copy_only=False)

    def _track_merges(self, text: pa.Array, keys: pa.Array) -> None:
        """Remember the first text of each key; a second, different text is a merge.

        Vectorised over the distinct values of a batch: the known keys are an index
        into the texts that first had them."""
        pairs = pa.table({"text": text, "key": keys}).drop_null() \
            .group_by(["key", "text"], use_threads=False).aggregate([])
        if pairs.num_rows == 0:
            return
        key = pairs.column("key").to_numpy(zero_copy_only=False)
        texts = pairs.column("text").to_numpy(zero_copy_only=False)
        known = self._owner_keys.get_indexer(key)
        fresh_rows = np.flatnonzero(known < 0)
        fresh_keys, first = np.unique(key[fresh_rows], return_index=True)
        self._owner_keys = self._owner_keys.append(pd.Index(fresh_keys))
        self._owner_texts = np.concatenate([self._owner_texts, texts[fresh_rows[first]]])
        owner = self._owner_texts[self._owner_keys.get_indexer(key)]
        clash = owner != texts
        if clash.any():
            self.merged.update(key[clash].tolist())
            if self.example is None:
                at = int(np.flatnonzero(clash)[0])
                self.example = (str(owner[at]), str(texts[at]), str(key[at]))

    def refuse_merges(self, allow: bool, file: str) -> None:
        """Fail on the first two raw keys that became one, unless merging is allowed."""
        if self.example is None or allow:
            return
        first, second, key = self.example
        raise DataError(
            f"keys {first!r} and {second!r} both become {key!r} under key_normalize "
            f"{self.mode}, so two clips would share one label; use {shown('key_normalize')} "
            f"raw, or {enable('allow_key_merge')} if they are one clip", file=file,
            column=self.column)


def _recode(raw_codes: np.ndarray, normalized: np.ndarray) -> KeyColumn:
    """Row codes into the distinct normalised keys (missing keys become -1)."""
    key_codes, uniques = pd.factorize(normalized, use_na_sentinel=True)
    codes = np.full(len(raw_codes), -1, dtype=np.intp)
    present = raw_codes >= 0
    codes[present] = key_codes[raw_codes[present]]
    return KeyColumn(codes, np.asarray(uniques, dtype=object))


def _factorize(values: pd.Series | pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, pd.Series]:
    """Codes per row (-1 for null) and the distinct raw values they point to."""
    if isinstance(values, pa.ChunkedArray) and pa.types.is_dictionary(values.type):
        values = values.unify_dictionaries().combine_chunks() if values.num_chunks \
            else pa.array([], type=values.type)
    if isinstance(values, pa.DictionaryArray):
        # A parquet string column read as a dictionary: factorise the small integer
        # indices and look at only the dictionary entries that rows use.
        indices = pc.fill_null(values.indices, -1).to_numpy(zero_copy_only=False)
        codes = np.full(len(indices), -1, dtype=np.intp)
        present = indices >= 0
        codes[present], used = pd.factorize(indices[present])
        return codes, values.dictionary.take(pa.array(used, type=pa.int64())).to_pandas()
    series = values if isinstance(values, pd.Series) else values.to_pandas()
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, pd.Series(uniques)


def _regex_picker(regex: re.Pattern[str]):
    """Group 1 of the first match (or the whole match); no match means no key."""
    search = regex.search

    def pick(text: str) -> str | None:
        found = search(text)
        if found is None:
            return None
        return found.group(1) if regex.groups else found.group(0)

    return pick
