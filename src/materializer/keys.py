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


def as_text(values: pd.Series | pa.ChunkedArray | pa.Array) -> pd.Series:
    """Key values as text, one value at a time; nulls and blanks become missing.

    A float prints without ``.0`` when it is a whole number (``101.0`` is ``101``, as
    the integer column it was before a null made it float) and as its shortest repr
    otherwise. The rule looks at each value alone, never at its neighbours, so a value
    has one text whichever batch or table it sits in. Text is put in Unicode NFC, so
    a macOS (NFD) file name matches the same name typed elsewhere.
    """
    series = values if isinstance(values, pd.Series) else values.to_pandas()
    series = series.reset_index(drop=True)
    if pd.api.types.is_float_dtype(series.dtype):
        numbers = series.astype("float64")
        whole = (np.isfinite(numbers) & (numbers == np.floor(numbers))
                 & (numbers.abs() < 2.0**53)).to_numpy()
        text = numbers.astype("string").astype(object)
        text[whole] = numbers[whole].astype("int64").astype("string").astype(object)
    else:
        text = series.astype("string").astype(object)
    text = pd.Series(text, dtype=object).where(series.notna(), None)
    stripped = text.str.strip().str.normalize("NFC")
    return stripped.where(stripped.str.len() > 0, None)


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
        self._known: dict[str, str | None] = {}
        self._owner: dict[str, str] = {}  # path-normalised key -> the first text with it
        self.merged: set[str] = set()
        self.example: tuple[str, str, str] | None = None

    def __call__(self, values: pd.Series | pa.ChunkedArray | pa.Array) -> KeyColumn:
        raw_codes, distinct = _factorize(values)
        if not isinstance(distinct.dtype, pd.StringDtype):
            return _recode(raw_codes, self._normalize(distinct))
        texts = distinct.tolist()
        new = [text for text in texts if text not in self._known]
        if new:
            found = self._normalize(pd.Series(new, dtype=distinct.dtype))
            self._known.update(zip(new, found.tolist(), strict=True))
        return _recode(raw_codes, np.array([self._known[t] for t in texts], dtype=object))

    def _normalize(self, distinct: pd.Series) -> np.ndarray:
        text = as_text(distinct)
        keys = text
        if self.mode != "raw":
            keys = text.str.replace(r"[/\\]+$", "", regex=True) \
                .str.replace(r"^.*[/\\]", "", regex=True)
            if self.mode == "stem":
                keys = keys.str.replace(r"(?<=.)\.[^.]*$", "", regex=True)
            keys = keys.str.strip()
            keys = keys.where(keys.str.len() > 0, None)
            self._track_merges(text, keys)
        if self.regex is not None:
            keys = keys.map(_regex_picker(self.regex), na_action="ignore").str.strip()
            keys = keys.where(keys.str.len() > 0, None)
        return keys.to_numpy(object)

    def _track_merges(self, text: pd.Series, keys: pd.Series) -> None:
        """Remember the first text of each key; a second, different text is a merge."""
        pairs = pd.DataFrame({"text": text, "key": keys}).dropna().drop_duplicates()
        if pairs.empty:
            return
        first = pairs.drop_duplicates("key")
        fresh = first[~first["key"].isin(self._owner.keys())] if self._owner else first
        self._owner.update(zip(fresh["key"].tolist(), fresh["text"].tolist(), strict=True))
        owner = pairs["key"].map(self._owner)
        clash = (owner != pairs["text"]).to_numpy()
        if clash.any():
            self.merged.update(pairs["key"][clash].tolist())
            if self.example is None:
                at = int(np.flatnonzero(clash)[0])
                self.example = (owner.iloc[at], pairs["text"].iloc[at], pairs["key"].iloc[at])

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
