"""Join keys: text as written, normalised the same way on both sides.

A key is a string or missing (``<NA>``): null, blank, or a regex that does not match
all mean "no key", never the text ``"None"`` or ``"nan"``. All steps are column-wide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

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


def normalize(
    values: pd.Series | pa.ChunkedArray | pa.Array,
    column: str,
    mode: str,
    regex: re.Pattern[str] | None,
) -> pd.Series:
    """Normalise one key column: text, then the mode, then the side's regex if any.

    The work runs once per distinct value (``pd.factorize``), so a per-frame table with
    hundreds of rows per clip costs little more than its distinct clips.
    """
    series = values if isinstance(values, pd.Series) else values.to_pandas()
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    distinct = _normalize_distinct(pd.Series(uniques), column, mode, regex).to_numpy(object)
    keys = np.empty(len(codes), dtype=object)
    present = codes >= 0
    keys[present] = distinct[codes[present]]
    return pd.Series(keys, index=series.index, dtype=object)


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
