"""Join keys: text as written, normalised the same way on both sides.

A key is a string or missing (``<NA>``): null, blank, or a regex that does not match
all mean "no key", never the text ``"None"`` or ``"nan"``. All steps are column-wide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from materializer.errors import UsageError

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
    """Key values as text exactly as written; nulls and blanks become missing.

    Whole-number floats (an integer column that held a null) print without ``.0``.
    """
    series = values if isinstance(values, pd.Series) else values.to_pandas()
    if pd.api.types.is_float_dtype(series.dtype):
        numbers = series.astype("float64")
        finite = numbers.dropna()
        if len(finite) and np.isfinite(finite).all() and (finite == np.floor(finite)).all():
            series = numbers.astype("Int64")
    text = series.astype("string").astype(object)
    text = text.where(series.notna(), None)
    stripped = pd.Series(text, dtype=object).str.strip()
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


def normalize(
    values: pd.Series | pa.ChunkedArray | pa.Array,
    column: str,
    mode: str,
    regex: re.Pattern[str] | None,
) -> pd.Series:
    """Normalise one key column: text, then the mode, then the side's regex if any."""
    index = values.index if isinstance(values, pd.Series) else None
    return normalize_codes(values, column, mode, regex).to_series(index)


def normalize_codes(
    values: pd.Series | pa.ChunkedArray | pa.Array,
    column: str,
    mode: str,
    regex: re.Pattern[str] | None,
) -> KeyColumn:
    """``normalize`` as codes: the text work runs once per distinct value.

    Two raw values may normalise to one key (two folders, one basename), so the
    normalised distinct values are factorised again.
    """
    raw_codes, distinct = _factorize(values)
    normalized = _normalize_distinct(distinct, column, mode, regex).to_numpy(object)
    return _recode(raw_codes, normalized)


class KeyNormalizer:
    """``normalize_codes`` for the record batches of one column, remembering text keys.

    The streaming path sees the same clips in every batch of both passes; each distinct
    text value is normalised once per run. Non-text columns are normalised per batch
    (their text form depends on the batch's other values, see ``as_text``).
    """

    def __init__(self, column: str, mode: str, regex: re.Pattern[str] | None) -> None:
        self.column, self.mode, self.regex = column, mode, regex
        self._known: dict[str, str | None] = {}

    def __call__(self, values: pd.Series | pa.ChunkedArray | pa.Array) -> KeyColumn:
        raw_codes, distinct = _factorize(values)
        if not isinstance(distinct.dtype, pd.StringDtype):
            normalized = _normalize_distinct(distinct, self.column, self.mode, self.regex)
            return _recode(raw_codes, normalized.to_numpy(object))
        texts = distinct.tolist()
        new = [text for text in texts if text not in self._known]
        if new:
            found = _normalize_distinct(pd.Series(new, dtype=distinct.dtype), self.column,
                                        self.mode, self.regex)
            self._known.update(zip(new, found.to_numpy(object).tolist(), strict=True))
        return _recode(raw_codes, np.array([self._known[t] for t in texts], dtype=object))


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


def _normalize_distinct(
    uniques: pd.Series, column: str, mode: str, regex: re.Pattern[str] | None
) -> pd.Series:
    keys = as_text(uniques)
    mode = effective_mode(mode, column)
    if mode in ("basename", "stem"):
        keys = keys.str.replace(r"/+$", "", regex=True).str.replace(r"^.*/", "", regex=True)
    if mode == "stem":
        keys = keys.str.replace(r"(?<=.)\.[^.]*$", "", regex=True)
    elif mode not in ("raw", "basename"):
        raise UsageError(f"unsupported key normalisation mode: {mode}")
    if regex is not None:
        keys = keys.map(_regex_picker(regex), na_action="ignore")
    keys = keys.str.strip()
    return keys.where(keys.str.len() > 0, None)


def _regex_picker(regex: re.Pattern[str]):
    """Group 1 of the first match (or the whole match); no match means no key."""
    search = regex.search

    def pick(text: str) -> str | None:
        found = search(text)
        if found is None:
            return None
        return found.group(1) if regex.groups else found.group(0)

    return pick
