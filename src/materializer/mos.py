"""The MOS-label join: subjective labels onto a feature table, with a coverage gate.

``load_labels`` turns label files into one table of unique keys; ``LabelJoin`` is the
core the join skeleton (:mod:`materializer.join`) runs, in memory or streamed:
``label_columns`` for any slice of feature keys, the match-rate gate and the audit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from materializer import join, sources, tableio
from materializer import keys as keymod
from materializer.errors import DataError, UsageError, naming_table
from materializer.options import MosOptions, ask_for, compile_regex, shown
from materializer.provenance import RunContext
from materializer.sources import Source

MOS_CANDIDATES = ("mos", "mean_mos", "mos_raw_0_100", "raw_mos", "score", "quality")
RAW_COLUMN = "mos_raw_0_100"
SOURCE_COLUMN = "mos_label_source"
# Output column -> label columns it is copied from (first case-insensitive match).
LABEL_EXTRAS = {
    "mos_std_dev": ("mos_std_dev", "stddev", "std_dev"),
    "mos_n_ratings": ("n_ratings", "mos_n_ratings", "rating_count"),
}
# Copied only when the feature table lacks them: a feature table's split or corpus
# (fold assignments) is never replaced by label values.
FEATURE_OWNED_EXTRAS = ("split", "corpus", "corpus_version")
SAMPLE_SIZE = 5
# The status column: index 0 for a row without a label, 1 for a labelled row.
STATUS_VALUES = pa.array(["missing-label", "ok"], type=pa.string())


@dataclass
class LabelSet:
    """All label files merged: one row per key, plus what each file looked like."""

    table: pa.Table  # key, key_hash, mos, mos_raw_0_100, file (index into paths), extras...
    files: list[dict[str, Any]] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    _arrays: dict[str, pa.Array] = field(default_factory=dict, repr=False)
    _keys: keymod.KeyIndex | None = field(default=None, repr=False)

    @property
    def keys(self) -> pa.Array:
        """The label keys as Arrow text (built once: the streaming path asks per batch)."""
        return self.index.keys

    @property
    def index(self) -> keymod.KeyIndex:
        if self._keys is None:
            self._keys = keymod.KeyIndex(self.array("key"),
                                         self.array("key_hash").to_numpy(), "labels")
        return self._keys

    def array(self, column: str) -> pa.Array:
        """One label column as one Arrow array (built once: asked for per batch)."""
        if column not in self._arrays:
            self._arrays[column] = self.table.column(column).combine_chunks()
        return self._arrays[column]

    def sources(self, rows: pa.Array) -> pa.Array:
        """The label file of each of ``rows`` (label rows, null for none) as written, ""
        for none: looked up per slice, so ten million labels hold no copy of the path."""
        return pc.fill_null(pc.take(pa.array(self.paths, type=pa.string()),
                                    self.array("file").take(rows)), "")

    def positions(self, keys: keymod.KeyColumn) -> np.ndarray:
        """The label row of each distinct feature key, -1 where there is none. The join
        asks three times for the same keys (count, gate, columns): the lookup runs once,
        its answer kept with the keys."""
        return self.index.lookup(keys)


def _scale_of(column: str, values: np.ndarray, requested: str, file: str) -> str:
    """Decide the scale of one label column (never per row).

    ``auto`` is 0-100 only when at least half the values lie above 5 and 1-5 when none
    does; a few values above 5 among 1-5 values is more likely a typo than a scale
    (one ``5.5`` must not rescale a whole file), so it fails.
    """
    if column.lower() == RAW_COLUMN:
        if requested == "1-5":
            raise UsageError(f"{shown('mos_scale')} 1-5 contradicts the column name {column!r}",
                             file=file, column=column)
        return "0-100"
    if requested != "auto":
        return requested
    above = int((values > 5).sum())
    if above == 0:
        return "1-5"
    if 2 * above >= len(values):
        return "0-100"
    first = float(values[values > 5][0])
    raise DataError(f"cannot tell the MOS scale: {above} of {len(values)} values are above 5 "
                    f"(first {first!r}), the rest within 1-5; {ask_for('mos_scale')} to 1-5 "
                    "or 0-100", file=file, column=column)


def _key_of_row(keys: keymod.KeyColumn, row: int) -> str:
    return str(keys.keys[int(keys.codes[row])].as_py())


def _numeric_labels(table: pa.Table, column: str, keys: keymod.KeyColumn, file: str) \
        -> np.ndarray:
    """MOS values as floats; a non-numeric, missing or infinite value is an error."""
    raw = table.column(column)
    if pa.types.is_boolean(raw.type):
        raise DataError("MOS values must be numbers, not booleans", file=file, column=column)
    numbers = tableio.float_values(raw)
    bad = ~keys.unkeyed & ~np.isfinite(numbers)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"MOS value {raw[first].as_py()!r} is not a finite number", file=file,
                        column=column, key=_key_of_row(keys, first))
    return numbers


def _spread_numbers(table: pa.Table, column: str, keys: keymod.KeyColumn, file: str) \
        -> np.ndarray:
    """A spread or rating count: empty is unknown, anything else a finite number >= 0
    (``n/a`` must not become an unknown silently, nor ``-0.4`` a spread)."""
    raw = table.column(column)
    numbers = tableio.float_values(raw)
    with np.errstate(invalid="ignore"):
        fine = np.isfinite(numbers) & (numbers >= 0)
    bad = ~keys.unkeyed & pc.is_valid(raw).to_numpy() & ~fine
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(f"value {str(raw[first].as_py())!r} is not a finite number >= 0",
                        file=file, column=column, key=_key_of_row(keys, first))
    return numbers


def _read_label_file(source: Source, options: MosOptions, run: RunContext, number: int) \
        -> tuple[pa.Table, dict[str, Any], bool]:
    """One label file as keyed rows (key, mos, raw MOS, ``file`` = ``number``, extras),
    its description, and whether each key is in one row only."""
    written = source.path
    key_of = join.key_resolver(source, options.label_key_column, keymod.MOS_KEY_CANDIDATES,
                               shown("label_key_column"))
    # One read (a JSON file is parsed once); the key column stays text as written.
    table = sources.load(source, run, join.text_key(key_of))
    columns = table.column_names
    key_column = key_of(columns)
    mos_column = keymod.resolve_column(columns, options.label_mos_column, MOS_CANDIDATES,
                                       shown("label_mos_column"), written)
    regex = compile_regex(options.label_key_regex, "label_key_regex")
    normalizer = keymod.KeyNormalizer(key_column, options.key_normalize, regex)
    label_keys = normalizer(table.column(key_column))
    normalizer.refuse_merges(options.allow_key_merge, written)
    values = _numeric_labels(table, mos_column, label_keys, written)
    keyed = ~label_keys.unkeyed
    scale = _scale_of(mos_column, values[keyed], options.mos_scale, written)
    low, high = options.mos_bounds or ((0.0, 100.0) if scale == "0-100" else (1.0, 5.0))
    off = keyed & ((values < low) | (values > high))
    if off.any():
        first = int(np.flatnonzero(off)[0])
        where = f"mos_bounds [{low:g}, {high:g}]" if options.mos_bounds \
            else f"the {scale} scale; {ask_for('mos_bounds')} if the corpus means it"
        raise DataError(f"MOS value {float(values[first])!r} is outside {where}",
                        file=written, column=mos_column, key=_key_of_row(label_keys, first))
    if scale == "0-100":
        mos, raw = 1.0 + 4.0 * values / 100.0, values
    else:
        mos, raw = values, (values - 1.0) * 25.0
    # The keyed rows; None when that is every row (no copy of ten million values).
    rows = None if keyed.all() else np.flatnonzero(keyed)

    def kept(values: np.ndarray) -> np.ndarray:
        return values if rows is None else values[rows]

    count = table.num_rows if rows is None else len(rows)
    hashes = pa.array(label_keys.hashes)
    if count == table.num_rows == len(label_keys.keys):  # a key a row, in row order
        keys = label_keys.keys  # no take of ten million keys
    else:
        picked = pa.array(kept(label_keys.codes))
        keys, hashes = label_keys.keys.take(picked), hashes.take(picked)
    labels = {"key": keys, "key_hash": hashes,
              "mos": pa.array(kept(mos)), RAW_COLUMN: pa.array(kept(raw)),
              "file": pa.array(np.full(count, number, dtype=np.int32))}
    spread_rescaled = False
    for target, candidates in LABEL_EXTRAS.items():
        found = keymod.find_column(columns, candidates)
        if found is not None:
            spread = kept(_spread_numbers(table, found, label_keys, written))
            if target == "mos_std_dev" and scale == "0-100":
                # A spread is in the units of its MOS: 1-5 MOS, 1-5 spread (x 4/100).
                spread = spread * 4.0 / 100.0
                spread_rescaled = True
            labels[target] = pa.array(spread, from_pandas=True)  # NaN: unknown, null
    for name in FEATURE_OWNED_EXTRAS:
        found = keymod.find_column(columns, (name,))
        if found is not None:
            column = table.column(found)
            labels[name] = column if rows is None else column.take(pa.array(rows))
    described = {
        "key_column": key_column,
        "keyed_rows": count,
        "merged_keys": len(normalizer.merged),
        "mos_column": mos_column,
        "rows": table.num_rows,
        "scale": scale,
        "source": written,
        "std_dev_rescaled_to_1_5": spread_rescaled,
    }
    return pa.table(labels), described, len(label_keys.keys) == count


def load_labels(label_sources: Sequence[Source], options: MosOptions, run: RunContext) \
        -> LabelSet:
    """Read every label file in order; identical duplicates collapse, conflicts fail.

    The first row of each key is kept, in order of first appearance; another row of the
    key with another MOS (or another known spread, count or split) is a conflict."""
    tables, files, distinct = [], [], []
    label_paths = [source.path for source in label_sources]
    for number, source in enumerate(label_sources):
        table, described, once = _read_label_file(source, options, run, number)
        tables.append(table)
        files.append(described)
        distinct.append(once)
    if not tables or not sum(table.num_rows for table in tables):
        raise DataError("no MOS labels loaded from " + ", ".join(label_paths),
                        file=label_paths[0] if label_paths else None)
    try:
        merged = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"label files disagree on a column's type ({exc})",
                        file=label_paths[-1]) from None
    extras = [c for c in merged.column_names if c in LABEL_EXTRAS or c in FEATURE_OWNED_EXTRAS]
    if len(tables) > 1 or not distinct[0]:
        # A key given twice (in one file or two): the same values only.
        codes, _, _ = keymod.encode(merged.column("key").combine_chunks(),
                                    merged.column("key_hash").to_numpy())
        first = keymod.first_rows(codes)
        for column in ["mos", *extras]:
            _refuse_conflicts(merged, column, codes, first, label_paths)
        merged = merged.take(pa.array(first))
    return LabelSet(table=merged, files=files, extras=extras, paths=label_paths)


def _refuse_conflicts(merged: pa.Table, column: str, codes: np.ndarray, first: np.ndarray,
                      label_paths: Sequence[str]) -> None:
    """Rows of one key must agree on ``column`` (where known): name the first key, in
    order of first appearance, whose rows do not, with its first two values.

    Files that agree on a clip's MOS must agree on its spread, count and split too:
    keeping the first file's value would hide the disagreement."""
    values = merged.column(column).combine_chunks()
    known = np.flatnonzero(pc.is_valid(values).to_numpy(zero_copy_only=False))
    owner = np.full(len(first), -1, dtype=np.intp)  # each key's first known row
    known_codes = codes[known]
    owner[known_codes[::-1]] = known[::-1]
    differs = pc.fill_null(pc.not_equal(values.take(pa.array(known)),
                                        values.take(pa.array(owner[known_codes]))), False)
    clashing = known[differs.to_numpy(zero_copy_only=False)]
    if not len(clashing):
        return
    key = codes[clashing[np.argmin(owner[codes[clashing]])]]
    one, two = owner[key], clashing[codes[clashing] == key][0]
    sources = merged.column("file")
    what = "MOS labels" if column == "mos" else column
    raise DataError(f"conflicting {what}: {values[one].as_py()!r} in "
                    f"{label_paths[sources[one].as_py()]} vs {values[two].as_py()!r} in "
                    f"{label_paths[sources[two].as_py()]}",
                    file=label_paths[sources[two].as_py()],
                    key=str(merged.column("key")[int(one)].as_py()))


def target_columns(labels: LabelSet, status_column: str, feature_columns: Sequence[str]) \
        -> list[str]:
    """The columns this join writes (feature-owned extras only where features lack them)."""
    names = ["mos", RAW_COLUMN, status_column, SOURCE_COLUMN]
    for extra in labels.extras:
        if extra in LABEL_EXTRAS or extra not in feature_columns:
            names.append(extra)
    return names


def label_columns(feature_keys: keymod.KeyColumn, labels: LabelSet, targets: Sequence[str],
                  status_column: str) -> dict[str, pa.Array]:
    """The new columns for a slice of normalised feature keys, as Arrow arrays.

    Values are taken from the label table by position on the Arrow side, so a missing
    label, or a label whose extra is null, is null in every column type.
    """
    per_key = labels.positions(feature_keys)
    positions = np.full(len(feature_keys), -1, dtype=np.intp)
    keyed = ~feature_keys.unkeyed
    positions[keyed] = per_key[feature_keys.codes[keyed]]
    matched = positions >= 0
    take = pa.array(positions, mask=~matched, type=pa.int64())

    columns: dict[str, pa.Array] = {
        "mos": labels.array("mos").take(take),
        RAW_COLUMN: labels.array(RAW_COLUMN).take(take),
        status_column: STATUS_VALUES.take(pa.array(matched.view(np.int8))),
        SOURCE_COLUMN: labels.sources(take),
    }
    for extra in labels.extras:
        if extra in targets:
            columns[extra] = labels.array(extra).take(take)
    return columns


@dataclass
class Coverage:
    """How well the feature keys are covered by labels."""

    total_keys: int
    matched_keys: int
    unkeyed_rows: int
    matched_rows: int
    input_rows: int
    unmatched_feature_keys: list[str]

    @property
    def denominator(self) -> int:
        return self.total_keys + self.unkeyed_rows

    @property
    def rate(self) -> float:
        return self.matched_keys / self.denominator if self.denominator else 0.0


def coverage_of(keys: pa.Array, in_labels: np.ndarray, *, unkeyed_rows: int,
                matched_rows: int, input_rows: int) -> Coverage:
    """Coverage from the distinct feature keys (first-appearance order) and row counts."""
    unmatched = np.flatnonzero(~in_labels)[:SAMPLE_SIZE]
    return Coverage(
        total_keys=len(keys),
        matched_keys=int(in_labels.sum()),
        unkeyed_rows=unkeyed_rows,
        matched_rows=matched_rows,
        input_rows=input_rows,
        unmatched_feature_keys=keys.take(pa.array(unmatched, type=pa.int64())).to_pylist(),
    )


def gate(cov: Coverage, min_rate: float, file: str) -> None:
    """Refuse a join whose coverage is below the minimum, before anything is written."""
    if cov.rate < min_rate:
        raise DataError(
            f"MOS label match rate {cov.rate:.3f} below {shown('min_match_rate')} {min_rate:.3f} "
            f"({cov.matched_keys}/{cov.denominator} keys; {cov.unkeyed_rows} rows without "
            f"a key; unmatched e.g. {', '.join(map(ascii, cov.unmatched_feature_keys[:3]))})",
            file=file)


def unmatched_label_keys(labels: LabelSet, distinct: keymod.KeyColumn) -> list[str]:
    """A few label keys (in label order) that none of the ``distinct`` feature keys has."""
    unused = np.flatnonzero(labels.index.unfound(distinct))[:SAMPLE_SIZE]
    return labels.keys.take(pa.array(unused, type=pa.int64())).to_pylist()


def build_audit(features: str, out: str, options: MosOptions, labels: LabelSet,
                feature_key_column: str, cov: Coverage, label_sources: Sequence[str],
                output_rows: int, unmatched_labels: list[str],
                kept_feature_columns: list[str]) -> dict[str, Any]:
    """The audit fields of the older script, plus what helps fix a low match rate."""
    return {
        "feature_key_column": feature_key_column,
        "feature_key_regex": options.feature_key_regex or "",
        "feature_table": features,
        "input_rows": cov.input_rows,
        "key_normalize": options.key_normalize,
        "kept_feature_columns": kept_feature_columns,
        "label_files": labels.files,
        "label_key_column": labels.files[0]["key_column"],
        "label_key_regex": options.label_key_regex or "",
        "label_mos_column": labels.files[0]["mos_column"],
        "label_sources": list(label_sources),
        "labels_loaded": labels.table.num_rows,
        "match_rate": cov.rate,
        "matched_feature_keys": cov.matched_keys,
        "matched_rows": cov.matched_rows,
        "min_match_rate": float(options.min_match_rate),
        "missing_rows": cov.input_rows - cov.matched_rows,
        "mos_bounds": list(options.mos_bounds) if options.mos_bounds else None,
        "mos_scale": options.mos_scale,
        "output": out,
        "output_rows": output_rows,
        "status_column": options.status_column,
        "total_feature_keys": cov.total_keys,
        "unkeyed_rows": cov.unkeyed_rows,
        "unmatched_feature_keys": cov.unmatched_feature_keys,
        "unmatched_label_keys": unmatched_labels,
    }


class LabelJoin:
    """The MOS join's core for the skeleton: label columns and the match-rate gate."""

    def __init__(self, labels: LabelSet, key_column: str, targets: Sequence[str],
                 options: MosOptions, features: str, out: str, label_paths: Sequence[str]) \
            -> None:
        self.labels, self.key_column, self.targets = labels, key_column, targets
        self.options, self.features, self.out = options, features, out
        self.label_paths = list(label_paths)
        self.regex = compile_regex(options.feature_key_regex, "feature_key_regex")
        self.matched_rows = 0
        self.coverage: Coverage | None = None
        self.unmatched_labels: list[str] = []

    def observed_columns(self, columns: Sequence[str]) -> list[str]:
        return []  # the match rate needs the keys alone

    def observe(self, keys: keymod.KeyColumn, values: Mapping[str, Any]) -> None:
        per_key = self.labels.positions(keys)
        self.matched_rows += int((per_key[keys.codes[~keys.unkeyed]] >= 0).sum())

    def gate(self, tally: Any) -> None:
        distinct = tally.distinct
        uniques = distinct.keys
        positions = self.labels.positions(distinct)
        self.coverage = coverage_of(uniques, positions >= 0, unkeyed_rows=tally.unkeyed,
                                    matched_rows=self.matched_rows, input_rows=tally.rows)
        gate(self.coverage, self.options.min_match_rate, self.features)
        self.unmatched_labels = unmatched_label_keys(self.labels, distinct)

    def columns(self, keys: keymod.KeyColumn) -> tuple[dict[str, pa.Array], None]:
        return label_columns(keys, self.labels, self.targets, self.options.status_column), None

    def audit(self, tally: Any) -> dict[str, Any]:
        kept = [c for c in FEATURE_OWNED_EXTRAS
                if c in self.labels.extras and c not in self.targets]
        assert self.coverage is not None, "gate() runs before audit()"
        return build_audit(self.features, self.out, self.options, self.labels,
                           self.key_column, self.coverage, self.label_paths, tally.rows,
                           self.unmatched_labels, kept)


def materialize_mos_labels(
    features: str | Mapping[str, Any],
    labels: Sequence[str | Mapping[str, Any]],
    out: str,
    *,
    audit_json: str | None = None,
    options: MosOptions | None = None,
    run: RunContext | None = None,
) -> dict[str, Any]:
    """Join MOS labels onto ``features`` and write ``out`` (and ``audit_json``).

    Tables are paths as written (resolved against ``run.base_dir``) or source mappings
    (:class:`materializer.sources.Source`). Returns the audit.
    """
    options = options or MosOptions()
    run = run or RunContext("materialize-mos-labels")
    with naming_table(run.table_id):
        feature = Source.parse(features)
        label_sources = [Source.parse(s) for s in labels]
        if not label_sources:
            raise UsageError("at least one --labels file is required")
        label_paths = [s.path for s in label_sources]

        def prepare(columns: list[str], key_column: str) -> LabelJoin:
            label_set = load_labels(label_sources, options, run)
            targets = target_columns(label_set, options.status_column, columns)
            join.check_overwrite(columns, targets, options.overwrite, feature.path)
            return LabelJoin(label_set, key_column, targets, options, feature.path, out,
                             label_paths)

        plan = join.Plan(feature, out, audit_json, run,
                         {"features": feature, "labels": label_sources},
                         options.allow_key_merge, options.key_normalize)
        key_of = join.key_resolver(feature, options.feature_key_column,
                                   keymod.MOS_KEY_CANDIDATES, shown("feature_key_column"))
        return join.materialize(plan, label_sources, key_of, prepare)
