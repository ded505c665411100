"""The second-opinion join: external no-reference scorer outputs as namespaced columns.

Score sidecars (JSONL, JSON rows or one wrapper object, CSV, parquet) become one record
table (competitor, key, score, status, runtime, frames, source); fields are looked up
column-wide in the row, then in ``summary``, then over ``frames[]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from materializer import files, join, sources, tableio
from materializer import keys as keymod
from materializer.agreement import competitor_agreement, gate_failures, intersection_agreement
from materializer.errors import DataError, UsageError, naming_table
from materializer.options import SecondOpinionOptions, ask_for, shown
from materializer.plan import Observed
from materializer.provenance import RunContext
from materializer.readers import format_of
from materializer.sources import Source

SCORE_CANDIDATES = ("score", "mos", "predicted_mos", "predicted_vmaf_or_mos", "quality", "vmaf")
RUNTIME_CANDIDATES = ("runtime_ms", "runtime_total_ms", "elapsed_ms")
OK_STATUSES = ("", "ok", "pass", "success")
SUFFIXES = ("score", "status", "runtime_ms", "frames", "source")
SAMPLE_SIZE = 5
MOS_COLUMN = "mos"
"""The feature column the agreement audit uses unless ``agreement_mos_column`` names one."""


def slug(name: str) -> str:
    """Lower-case, every run outside ``[a-z0-9]`` turned into ``_``, trimmed."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _rows_frame(spec: Source, run: RunContext, key_fields: Sequence[str]) -> pd.DataFrame:
    """The sidecar's rows as a frame (nested ``summary``/``frames`` stay objects).

    Every column that may hold the key is read as text as written, so ``007`` stays
    ``007`` (and is not the same key as ``7``), as in feature tables. A source given as a
    mapping, or in a format only :mod:`materializer.readers` reads, is read by
    :func:`materializer.sources.load`.
    """
    wanted = {f.lower() for f in key_fields}

    def text(columns: list[str]) -> list[str]:
        return [c for c in columns if str(c).lower() in wanted]

    fmt = format_of(spec.path, spec.read)
    if not spec.plain or fmt not in files.FORMATS.values():
        return sources.load(spec, run, text).to_pandas()
    path = run.resolve(spec.path)
    if fmt in ("parquet", "csv"):
        return tableio.read_table(path, spec.path, text_columns=text).to_pandas()
    if fmt == "jsonl":
        with tableio.reading(path, spec.path):
            table = tableio.jsonl_by_arrow(path, text)  # flat rows; else Python's parser
            return table.to_pandas() if table is not None else \
                tableio.read_jsonl(path, spec.path)
    payload = tableio.load_json(path, spec.path)
    if isinstance(payload, dict):
        rows = payload.get("rows") or payload.get("results")
        payload = rows if isinstance(rows, list) else [payload]
    if not isinstance(payload, list):
        raise DataError("score JSON must be a list of rows, {\"rows\": [...]}, "
                        "{\"results\": [...]} or one row object", file=spec.path)
    bad = [i for i, row in enumerate(payload) if not isinstance(row, dict)]
    if bad:
        raise DataError(f"rows[{bad[0]}] must be a JSON object", file=spec.path)
    return pd.DataFrame.from_records(payload) if payload else pd.DataFrame()


def _nested(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The object-valued column ``name`` (e.g. ``summary``) as its own frame."""
    column = keymod.find_column(list(frame.columns), (name,))
    if column is None:
        return pd.DataFrame(index=frame.index)
    values = [v if isinstance(v, dict) else {} for v in frame[column].tolist()]
    return pd.DataFrame.from_records(values, index=frame.index) if values else \
        pd.DataFrame(index=frame.index)


def _first(frames: Sequence[pd.DataFrame], candidates: Sequence[str], exact: bool = False) \
        -> pd.Series:
    """Column-wide: the first non-null candidate value per row. Where one candidate
    column is present (the usual case) it is that column as it is, its dtype kept: a
    float runtime stays float, not a column of Python objects."""
    present: dict[tuple[int, str], pd.Series] = {}  # two candidates may find one column
    for number, frame in enumerate(frames):
        for candidate in candidates:
            column = candidate if exact else keymod.find_column(list(frame.columns),
                                                                (candidate,))
            if column in frame.columns:
                present.setdefault((number, column), frame[column])
    if len(present) == 1:
        return next(iter(present.values()))
    values = pd.Series([None] * len(frames[0].index), index=frames[0].index, dtype=object)
    for column in present.values():
        take = values.isna() & column.notna()
        values = values.where(~take, column.astype(object))
    return values


def _field_per_competitor(levels: Sequence[pd.DataFrame], candidates: Sequence[str],
                          competitor: pd.Series, exact: bool) -> tuple[pd.Series, dict[str, str]]:
    """Each competitor's score field, chosen once per file: the first candidate (row,
    then ``summary``) that any of its rows fills. Rows that leave it empty have no
    score, never another field's value (a ``mos`` column is ground truth, not a score).
    """
    values = pd.Series([None] * len(competitor), index=competitor.index, dtype=object)
    chosen: dict[str, str] = {}
    for name in pd.unique(competitor.dropna()):
        rows = (competitor == name).to_numpy()
        found = _filled_field(levels, candidates, exact, rows)
        if found is not None:
            level, column = found
            if rows.all():  # one competitor per file, the common case: keep its dtype
                values = levels[level][column].copy()
            else:
                values[rows] = levels[level][column][rows].astype(object)
            chosen[name] = f"{('', 'summary.')[level]}{column}"
    return values, chosen


def _filled_field(levels: Sequence[pd.DataFrame], candidates: Sequence[str], exact: bool,
                  rows: np.ndarray | slice = slice(None)) -> tuple[int, str] | None:
    """The first candidate field (in the row, then in ``summary``) that any of ``rows``
    fills, as (level, column): the one rule for choosing a key, score or frame field."""
    for level, frame in enumerate(levels):
        for candidate in candidates:
            column = candidate if exact else keymod.find_column(list(frame.columns),
                                                                (candidate,))
            if column in frame.columns and frame[column][rows].notna().any():
                return level, column
    return None


def _text(values: pd.Series) -> pd.Series:
    """Each present value's text, trimmed (column-wide string methods); missing stays."""
    return values.astype("string").str.strip().astype(object).where(lambda v: v.notna(), None)


def _numbers(values: pd.Series, keys: pd.Series, file: str, what: str,
             at_least_zero: bool = False) -> pd.Series:
    """Present values as floats; a present value that is not a finite number (or, with
    ``at_least_zero``, a negative one, such as a runtime) fails. A column of numbers is
    taken as it is; only a column of mixed Python values is looked at value by value
    (true/false is not a number)."""
    present = values.notna()
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype):
        numbers = values.astype("float64")
    else:
        is_bool = values.map(lambda v: isinstance(v, bool), na_action="ignore").fillna(False)
        numbers = pd.to_numeric(values.where(~is_bool.astype(bool), "bool"), errors="coerce")
    finite = numbers.astype("float64")
    bad = present & ~np.isfinite(finite)
    if at_least_zero:
        bad |= present & (finite < 0)
    if bad.any():
        row = bad.to_numpy().nonzero()[0][0]
        limit = "a finite number >= 0" if at_least_zero else "a finite number"
        value = values.iloc[row]  # as written: a NumPy number prints as the plain number
        raise DataError(f"{what} {value.item() if isinstance(value, np.generic) else value!r}"
                        f" is not {limit}", file=file,
                        key=None if pd.isna(keys.iloc[row]) else str(keys.iloc[row]))
    return numbers.astype("float64")


def _frame_scores(frame: pd.DataFrame, keys: pd.Series, options: SecondOpinionOptions,
                  file: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Mean score, frame count and summed runtime over each row's ``frames[]``."""
    empty = pd.Series(np.nan, index=frame.index)
    column = keymod.find_column(list(frame.columns), ("frames",))
    if column is None:
        return empty, pd.Series(0, index=frame.index), empty
    lists = frame[column].where(frame[column].map(lambda v: isinstance(v, list)), None)
    exploded = lists.explode().dropna()
    if exploded.empty:
        return empty, pd.Series(0, index=frame.index), empty
    not_object = ~exploded.map(lambda v: isinstance(v, dict))
    if not_object.any():
        raise DataError("frames[] entries must be JSON objects", file=file,
                        key=str(keys.loc[not_object.index[not_object.to_numpy()][0]]))
    per_frame = pd.DataFrame.from_records(exploded.tolist())
    per_frame.index = exploded.index
    candidates = (options.score_field,) if options.score_field else SCORE_CANDIDATES
    found = _filled_field([per_frame], candidates, bool(options.score_field))
    score = per_frame[found[1]] if found else pd.Series(np.nan, index=per_frame.index)
    if score.isna().any():
        row = score.index[score.isna().to_numpy()][0]
        raise DataError("a frames[] entry has no score field", file=file, key=str(keys.loc[row]))
    score = _numbers(score, keys.reindex(score.index), file, "frame score")
    runtime = _first([per_frame], RUNTIME_CANDIDATES)
    runtime = _numbers(runtime, keys.reindex(runtime.index), file, "frame runtime",
                       at_least_zero=True)
    grouped = score.groupby(level=0)
    return (grouped.mean().reindex(frame.index), grouped.count().reindex(frame.index)
            .fillna(0).astype("int64"), runtime.groupby(level=0).sum(min_count=1)
            .reindex(frame.index))


def load_scores(spec: Source, options: SecondOpinionOptions, run: RunContext) \
        -> tuple[pa.Table, int, dict[str, str]]:
    """One sidecar as records (status ok, bad, or missing for a row without a score, as
    its place in ``ROW_STATUSES``); returns them, the number of rows without a key and
    each competitor's score field.

    The key field is ``score_key_field`` if given, else an aligned source's
    ``align_to.key_column``, else the first candidate a row fills."""
    named = options.score_key_field or (spec.align_to.key_column if spec.align_to else None)
    key_fields: Sequence[str] = (named,) if named else keymod.SCORE_KEY_CANDIDATES
    frame = _rows_frame(spec, run, key_fields).reset_index(drop=True)
    if frame.empty:
        raise DataError("no score rows", file=spec.path)
    summary = _nested(frame, "summary")
    levels = [frame, summary]
    if options.score_key_field and not any(options.score_key_field in level.columns
                                           for level in levels):
        raise UsageError(f"{shown('score_key_field')} {options.score_key_field!r} is not present",
                         file=spec.path, column=options.score_key_field)
    key_column = _score_keys(levels, key_fields, named is not None, options, spec.path)
    keys = key_column.to_series(frame.index)  # for the errors below, which name a key

    competitor = _first(levels, ("competitor",))
    competitor = _text(competitor).replace("", None)
    if spec.label:
        competitor = competitor.fillna(spec.label)
    if competitor.isna().any():
        raise DataError("score row has no competitor field; use LABEL=path for --scores",
                        file=spec.path, key=str(keys[competitor.isna()].iloc[0]))

    candidates = (options.score_field,) if options.score_field else SCORE_CANDIDATES
    score, fields = _field_per_competitor(levels, candidates, competitor,
                                          exact=bool(options.score_field))
    score = _numbers(score, keys, spec.path, "score")
    frame_mean, frame_count, frame_runtime = _frame_scores(frame, keys, options, spec.path)
    from_frames = score.isna() & frame_mean.notna()
    score = score.where(~from_frames, frame_mean)
    frames = frame_count.where(from_frames, 0).astype("int64")
    runtime = _first(levels, RUNTIME_CANDIDATES)
    runtime = _numbers(runtime, keys, spec.path, "runtime", at_least_zero=True) \
        .fillna(frame_runtime)
    status_raw = _first(levels, ("status",))
    status_text = _text(status_raw).str.lower().fillna("")
    ok = status_text.isin(OK_STATUSES).to_numpy()
    for name in pd.unique(competitor):
        rows = (competitor == name).to_numpy()
        if name not in fields and not from_frames[rows].any() and ok[rows].any():
            raise DataError(f"neither a score field nor non-empty frames[] in any row of "
                            f"competitor {name!r} (tried {', '.join(candidates)}); "
                            f"{ask_for('score_field')}", file=spec.path,
                            key=str(keys[rows & ok].iloc[0]))
        fields.setdefault(name, "frames[]" if from_frames[rows].any() else "")
    status = np.where(ok, np.where(score.isna(), MISSING, OK), BAD).astype(np.int8)
    keyed = np.flatnonzero(~key_column.unkeyed)
    records = pa.table({
        "competitor": pa.array(competitor.to_numpy(object)[keyed], type=pa.string()),
        "key": key_column.keys.take(pa.array(key_column.codes[keyed])),
        "key_hash": key_column.hashes[key_column.codes[keyed]],  # the normaliser's
        "score": score.to_numpy("float64")[keyed], "status": status[keyed],
        "runtime_ms": runtime.to_numpy("float64")[keyed],
        "frames": frames.to_numpy("int64")[keyed],
        "source": pc.fill_null(pa.nulls(len(keyed), pa.string()), spec.path),  # one path
    })
    return records, len(frame) - len(keyed), fields


def _score_keys(levels: Sequence[pd.DataFrame], key_fields: Sequence[str], exact: bool,
                options: SecondOpinionOptions, file: str) -> keymod.KeyColumn:
    """The key field, chosen once per file like the score: the first candidate (row,
    then ``summary``) that any row fills; a row that leaves it empty has no key."""
    found = _filled_field(levels, key_fields, exact)
    if found is None:
        raise DataError(f"score rows have no key field; {ask_for('score_key_field')}",
                        file=file)
    level, column = found
    normalizer = keymod.KeyNormalizer(column, options.key_normalize, None)
    keys = normalizer(levels[level][column])
    normalizer.refuse_merges(options.allow_key_merge, file)
    return keys


def _column_bases(competitors: Sequence[str], prefix: str, given: set[str]) -> dict[str, str]:
    """Competitor -> column base; two names with one slug are an error naming both.

    A clash of two names the user gave (``LABEL=`` in the scores) is bad usage (exit 2);
    one that involves a name from the score rows is bad data (exit 1).
    """
    bases: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name in competitors:
        name_slug = slug(name)
        if not name_slug:
            raise DataError(f"cannot derive a column name from competitor {name!r}")
        if name_slug in owner:
            error = UsageError if {owner[name_slug], name} <= given else DataError
            raise error(f"competitors {owner[name_slug]!r} and {name!r} map to the same "
                        f"columns {prefix}_{name_slug}_*; rename one")
        owner[name_slug] = name
        bases[name] = f"{prefix}_{name_slug}"
    return bases


ROW_STATUSES = ("ok", "bad", "missing")
OK, BAD, MISSING = 0, 1, 2
STATUS_TEXT = pa.array(ROW_STATUSES, type=pa.string())


class _Competitor:
    """One competitor's score records, looked up by feature key."""

    def __init__(self, name: str, records: pa.Table, base: str) -> None:
        """``records``: the competitor's, from every file in turn; a key given twice
        (in one file or two) fails, naming the file of its second record."""
        self.name, self.base = name, base
        self.keys = records["key"].combine_chunks()
        hashes = records["key_hash"].to_numpy()
        again = keymod.first_repeat(self.keys, hashes)
        if again is not None:
            raise DataError(f"duplicate score for competitor {name!r}",
                            file=records["source"][again].as_py(), key=self.keys[again].as_py())
        self.index = keymod.KeyIndex(self.keys, hashes, name=f"scores of {name}")
        self.status = records["status"].to_numpy()
        self.scores = records["score"].to_numpy()
        self.runtime_ms = records["runtime_ms"].to_numpy()
        self.frames = records["frames"].to_numpy()
        self.sources = records["source"].combine_chunks()
        self.rows = dict.fromkeys(ROW_STATUSES, 0)

    def positions(self, keys: keymod.KeyColumn) -> np.ndarray:
        """The record of each feature row, -1 where there is none (or no key)."""
        per_key = self.index.lookup(keys)
        positions = np.full(len(keys), -1, dtype=np.intp)
        keyed = ~keys.unkeyed
        positions[keyed] = per_key[keys.codes[keyed]]
        return positions

    def row_status(self, positions: np.ndarray) -> np.ndarray:
        """Each row's status as its position in ``ROW_STATUSES`` (small integers)."""
        return np.where(positions >= 0, self.status[np.maximum(positions, 0)], MISSING)

    def ok_scores(self, positions: np.ndarray, status: np.ndarray) -> np.ndarray:
        """Each row's score where its status is ok, NaN elsewhere: bad and missing rows
        take no part in the agreement with MOS."""
        return np.where(status == OK, self.scores[np.maximum(positions, 0)], np.nan)


class _AgreementRows:
    """MOS and each competitor's ok score per clip written (the first written row of each
    feature key), gathered over the slices that pass one observes, so the agreement (and
    its gates) are known before any write.

    Per clip, not per row: a per-frame table repeats a clip's MOS and score on every
    frame, and counting frames would weight long clips and shrink the intervals (frames
    are not independent ratings). A table of one row per clip is the same either way.
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.keys: list[np.ndarray] = []
        self.mos: list[np.ndarray] = []
        self.scores: dict[str, list[np.ndarray]] = {name: [] for name in names}

    def add(self, keys: keymod.KeyColumn, mos: np.ndarray,
            scores: Mapping[str, np.ndarray]) -> None:
        codes, first = np.unique(keys.codes, return_index=True)
        first = first[codes >= 0]  # rows without a key are no clip (and have no score)
        self.keys.append(keys.uniques[keys.codes[first]])
        self.mos.append(mos[first])
        for name, values in scores.items():
            self.scores[name].append(values[first])

    def block(self, mos_column: str) -> dict[str, Any]:
        """The audit's ``agreement``: per competitor over its ok clips with a finite MOS,
        and across competitors over the clips where every one is ok."""
        if not self.keys:
            return self._figures(mos_column, np.empty(0), {n: np.empty(0) for n in self.scores})
        again = pd.Index(np.concatenate(self.keys)).duplicated()  # seen in an earlier slice
        mos = np.concatenate(self.mos)[~again]
        scores = {name: np.concatenate(parts)[~again] for name, parts in self.scores.items()}
        return self._figures(mos_column, mos, scores)

    @staticmethod
    def _figures(mos_column: str, mos: np.ndarray,
                 scores: Mapping[str, np.ndarray]) -> dict[str, Any]:
        every = np.isfinite(mos) & np.all([np.isfinite(v) for v in scores.values()], axis=0)
        return {
            "mos_column": mos_column,
            "rows_with_mos": int(np.isfinite(mos).sum()),
            "competitors": {name: competitor_agreement(values, mos)
                            for name, values in scores.items()},
            "intersection": intersection_agreement(
                {name: values[every] for name, values in scores.items()}, mos[every]),
        }


AGREEMENT_GATES = ("min_abs_srcc", "min_abs_plcc_logistic")


class ScoreJoin:
    """The second-opinion core for the skeleton: namespaced columns per competitor, the
    per-competitor coverage gate, the missing-row policy, and the agreement of each
    competitor with the feature table's MOS (with its gates)."""

    regex = None

    def __init__(self, records: pa.Table, bases: dict[str, str], key_column: str,
                 options: SecondOpinionOptions, features: str, out: str, specs: list[Source],
                 loaded: list[tuple[pa.Table, int, dict[str, str]]]) -> None:
        self.key_column, self.options, self.features, self.out = key_column, options, \
            features, out
        self.specs, self.loaded = specs, loaded
        self.competitors = [
            _Competitor(name, records.filter(pc.equal(records["competitor"], name)), base)
            for name, base in bases.items()]
        self.missing_any_rows = 0
        self.stats: dict[str, Any] = {}
        self.mos_column: str | None = None
        self.rows = _AgreementRows([c.name for c in self.competitors])
        self.agreement: dict[str, Any] | None = None

    def observed_columns(self, columns: Sequence[str]) -> list[str]:
        """The MOS column of the agreement audit: the one named, else ``mos`` if present."""
        named = self.options.agreement_mos_column
        if named is not None and named not in columns:
            raise UsageError(f"{shown('agreement_mos_column')} {named!r} is not present",
                             file=self.features, column=named)
        self.mos_column = named or (MOS_COLUMN if MOS_COLUMN in columns else None)
        gated = [name for name in AGREEMENT_GATES if getattr(self.options, name) is not None]
        if self.mos_column is None and gated:
            raise UsageError(f"{shown(gated[0])} needs a MOS column and the table has no "
                             f"{MOS_COLUMN!r}; {ask_for('agreement_mos_column')}",
                             file=self.features)
        return [self.mos_column] if self.mos_column else []

    def observe(self, keys: keymod.KeyColumn, values: Observed) -> None:
        missing_any = np.zeros(len(keys), dtype=bool)
        scores = {}
        for competitor in self.competitors:
            positions = competitor.positions(keys)
            status = competitor.row_status(positions)
            for name, count in zip(ROW_STATUSES, np.bincount(status, minlength=3),
                                   strict=True):
                competitor.rows[name] += int(count)
            missing_any |= status == MISSING
            if self.mos_column is not None:
                scores[competitor.name] = competitor.ok_scores(positions, status)
        self.missing_any_rows += int(missing_any.sum())
        if self.mos_column is not None:
            mos = tableio.float_values(values[self.mos_column])  # no number, no MOS
            if self.options.missing_policy == "drop":  # rows not written are not compared
                mos = np.where(missing_any, np.nan, mos)
            self.rows.add(keys, mos, scores)

    def gate(self, tally: Any) -> None:
        distinct = tally.distinct
        for competitor in self.competitors:
            unmatched = competitor.index.unfound(distinct)
            found = competitor.rows["ok"] + competitor.rows["bad"]
            self.stats[competitor.name] = {
                "bad_rows": competitor.rows["bad"],
                "column_prefix": competitor.base,
                "competitor": competitor.name,
                "coverage": found / tally.rows if tally.rows else 0.0,
                "matched_rows": competitor.rows["ok"],
                "missing_rows": competitor.rows["missing"],
                "scores_loaded": len(competitor.keys),
                "unmatched_score_keys":
                    competitor.keys.filter(pa.array(unmatched))[:SAMPLE_SIZE].to_pylist(),
                "unmatched_scores": int(unmatched.sum()),
            }
        for _, _, fields in self.loaded:
            for name, field_name in fields.items():
                self.stats[name].setdefault("score_fields", []).append(field_name)
        _gate(self.stats, self.options.min_coverage, tally.rows, self.features)
        if self.options.missing_policy == "fail" and self.missing_any_rows:
            counts = ", ".join(f"{c.name}={c.rows['missing']}" for c in self.competitors
                               if c.rows["missing"])
            raise DataError(f"missing second-opinion scores: {counts}", file=self.features)
        if self.mos_column is not None:
            self.agreement = self.rows.block(self.mos_column)
            _agreement_gate(self.agreement, self.options, self.features)

    def columns(self, keys: keymod.KeyColumn) -> tuple[dict[str, pa.Array], np.ndarray | None]:
        columns: dict[str, pa.Array] = {}
        missing_any = np.zeros(len(keys), dtype=bool)
        for competitor in self.competitors:
            positions = competitor.positions(keys)
            status = competitor.row_status(positions)
            lost = status == MISSING
            take = np.maximum(positions, 0)
            base = competitor.base
            columns[f"{base}_score"] = _nullable_floats(competitor.scores[take], lost)
            columns[f"{base}_status"] = STATUS_TEXT.take(pa.array(status))
            columns[f"{base}_runtime_ms"] = _nullable_floats(competitor.runtime_ms[take], lost)
            columns[f"{base}_frames"] = pa.array(np.where(lost, 0, competitor.frames[take]),
                                                 type=pa.int64())
            columns[f"{base}_source"] = pc.fill_null(
                competitor.sources.take(pa.array(take, mask=lost)), "")
            missing_any |= lost
        return columns, (~missing_any if self.options.missing_policy == "drop" else None)

    def audit(self, tally: Any) -> dict[str, Any]:
        dropped = self.missing_any_rows if self.options.missing_policy == "drop" else 0
        return {
            "competitors": self.stats,
            "feature_table": self.features,
            "input_rows": tally.rows,
            "key_column": self.key_column,
            "key_normalize": self.options.key_normalize,
            "min_abs_plcc_logistic": self.options.min_abs_plcc_logistic,
            "min_abs_srcc": self.options.min_abs_srcc,
            "min_coverage": float(self.options.min_coverage),
            "missing_policy": self.options.missing_policy,
            "output": self.out,
            "output_rows": tally.rows - dropped,
            "prefix": self.options.prefix,
            "score_sources": [str(s) for s in self.specs],
            "unkeyed_feature_rows": tally.unkeyed,
            "unkeyed_score_rows": sum(n for _, n, _ in self.loaded),
            "unmatched_scores": sum(s["unmatched_scores"] for s in self.stats.values()),
            **({"agreement": self.agreement} if self.agreement is not None else {}),
        }


def materialize_second_opinion(
    features: str | Mapping[str, Any],
    scores: Sequence[str | Mapping[str, Any]],
    out: str,
    *,
    audit_json: str | None = None,
    options: SecondOpinionOptions | None = None,
    run: RunContext | None = None,
) -> dict[str, Any]:
    """Join second-opinion scores onto ``features`` and write ``out`` (and the audit).

    Tables are paths as written (resolved against ``run.base_dir``), ``LABEL=PATH`` for
    scores, or source mappings (:class:`materializer.sources.Source`). Returns the audit.
    """
    options = options or SecondOpinionOptions()
    run = run or RunContext("materialize-second-opinion-features")
    with naming_table(run.table_id):
        feature = Source.parse(features)
        specs = [Source.parse(s, labelled=True) for s in scores]
        if not specs:
            raise UsageError("at least one --scores file is required")

        def prepare(columns: list[str], key_column: str) -> ScoreJoin:
            loaded = [load_scores(spec, options, run) for spec in specs]
            records = pa.concat_tables([r for r, _, _ in loaded])
            if not records.num_rows:
                raise DataError("no scores loaded", file=specs[0].path)
            bases = _column_bases(sorted(pc.unique(records["competitor"]).to_pylist()),
                                  options.prefix,
                                  {spec.label for spec in specs if spec.label})
            join.check_overwrite(columns, [f"{b}_{s}" for b in bases.values() for s in SUFFIXES],
                                 options.overwrite, feature.path, "second-opinion columns")
            return ScoreJoin(records, bases, key_column, options, feature.path, out, specs,
                             loaded)

        plan = join.Plan(feature, out, audit_json, run, {"features": feature, "scores": specs},
                         options.allow_key_merge, options.key_normalize)
        key_of = join.key_resolver(feature, options.key_column, keymod.SCORE_KEY_CANDIDATES,
                                   shown("key_column"))
        return join.materialize(plan, specs, key_of, prepare)


def _gate(stats: dict[str, Any], min_coverage: float, input_rows: int, file: str) -> None:
    """A competitor that scores no feature row (or fewer than ``min_coverage`` of them)
    is a failed join, not a column of nulls with exit 0."""
    for name, figures in stats.items():
        matched = input_rows - figures["missing_rows"]
        if input_rows and (matched == 0 or figures["coverage"] < min_coverage):
            raise DataError(
                f"competitor {name!r} scores {matched} of {input_rows} feature rows "
                f"(coverage {figures['coverage']:.3f}, {shown('min_coverage')} "
                f"{min_coverage:.3f}); unmatched score keys e.g. "
                f"{', '.join(map(ascii, figures['unmatched_score_keys'][:3])) or 'none'}",
                file=file)


def _agreement_gate(agreement: Mapping[str, Any], options: SecondOpinionOptions,
                    file: str) -> None:
    """A scorer that does not track MOS (or a misaligned join, which looks the same) fails
    the table, in one line naming each competitor, figure and threshold."""
    failures = gate_failures(agreement["competitors"], options.min_abs_srcc,
                             options.min_abs_plcc_logistic, shown)
    if failures:
        raise DataError(f"agreement with MOS below its gate: {'; '.join(failures)}",
                        file=file, column=agreement["mos_column"])


def _nullable_floats(values: np.ndarray, lost: np.ndarray) -> pa.Array:
    """Floats, null where the row is missing or has no value: never NaN.

    (``pa.array`` ignores ``from_pandas`` NaN detection once a mask is given, so a
    matched row without a runtime came out as NaN: ``nan`` in CSV, NaN in parquet.)
    """
    values = np.asarray(values, dtype="float64")
    return pa.array(values, mask=lost | np.isnan(values), type=pa.float64())
