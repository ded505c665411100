"""The one join skeleton: checks, hashing, keys, the coverage gate, attaching, publishing.

A kind of join (``mos``, ``second_opinion``) supplies only its pure core, a
:class:`Core`: which columns it adds, what it counts over the feature keys, its gate,
and its audit. The skeleton runs the core either on the whole table in memory or, for
a large parquet table, in record batches (:mod:`materializer.streaming`); both see the
same keys through the same :class:`~materializer.keys.KeyNormalizer`, so they give the
same rows and the same audit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from materializer import files, publish, tableio
from materializer import keys as keymod
from materializer.provenance import InputHasher, RunContext


class KeyTally:
    """Feature keys seen so far: rows, rows without a key, distinct keys in order."""

    def __init__(self) -> None:
        self.rows = 0
        self.unkeyed = 0
        self._seen: dict[Any, None] = {}

    def add(self, keys: keymod.KeyColumn) -> None:
        self.rows += len(keys)
        self.unkeyed += int(keys.unkeyed.sum())
        self._seen.update(dict.fromkeys(keys.uniques.tolist()))

    @property
    def uniques(self) -> np.ndarray:
        """Distinct keys in order of first appearance, as in one in-memory pass."""
        return np.array(list(self._seen), dtype=object)


class Core(Protocol):
    """What one kind of join adds to the skeleton."""

    key_column: str
    regex: re.Pattern[str] | None

    def observe(self, keys: keymod.KeyColumn) -> None:
        """Count what the gate and the audit need, for one slice of feature keys."""

    def gate(self, tally: KeyTally) -> None:
        """After every key was seen, before anything is written: raise to refuse."""

    def columns(self, keys: keymod.KeyColumn) -> tuple[dict[str, pa.Array], np.ndarray | None]:
        """The new columns for a slice of feature keys, and which rows to keep (None: all)."""

    def audit(self, tally: KeyTally) -> dict[str, Any]:
        """The audit fields (the skeleton adds provenance, merges and streaming)."""


@dataclass
class Plan:
    """One join as the skeleton runs it: paths as written and where they resolve."""

    features: str
    out: str
    audit_json: str | None
    run: RunContext
    inputs: Mapping[str, Any]
    """Provenance name -> path or list of paths, as written."""
    allow_key_merge: bool
    key_normalize: str
    hasher: InputHasher = field(init=False)

    @property
    def feature_path(self) -> Path:
        return self.run.resolve(self.features)

    def normalizer(self, core: Core) -> keymod.KeyNormalizer:
        return keymod.KeyNormalizer(core.key_column, self.key_normalize, core.regex)


def attach(table: pa.Table, columns: Mapping[str, pa.Array]) -> pa.Table:
    """Replace existing columns in place, append new ones at the end."""
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        if index >= 0:
            table = table.set_column(index, name, values)
        else:
            table = table.append_column(name, values)
    return table


def check_overwrite(feature_columns: Sequence[str], targets: Sequence[str], overwrite: bool,
                    file: str, what: str = "columns") -> None:
    """Refuse to replace feature columns the join would write, unless asked to."""
    from materializer.errors import DataError
    from materializer.options import enable

    existing = [c for c in targets if c in feature_columns]
    if existing and not overwrite:
        raise DataError(f"refusing to overwrite existing {what} {', '.join(existing)}; "
                        f"{enable('overwrite')}", file=file, column=existing[0])


def materialize(plan: Plan, sources: Sequence[str],
                prepare: Callable[[list[str]], Core]) -> dict[str, Any]:
    """Run one join: ``prepare`` reads the sources and returns the core, given the
    feature table's column names. Returns the audit."""
    for written in (plan.out, plan.features, *sources):
        files.table_format(written)
    publish.check_outputs(plan.run, plan.out, plan.audit_json, [plan.features, *sources])
    plan.hasher = InputHasher([plan.features, *sources], plan.run.base_dir)
    try:
        core = prepare(tableio.read_columns(plan.feature_path, plan.features))
        from materializer import streaming

        if streaming.should_stream(plan.feature_path, plan.features, plan.out):
            return streaming.materialize_streaming(plan, core)
        return _in_memory(plan, core)
    finally:
        plan.hasher.close()


def _in_memory(plan: Plan, core: Core) -> dict[str, Any]:
    table = tableio.read_table(plan.feature_path, plan.features, text_columns=[core.key_column],
                               csv_types=files.table_format(plan.out) != "csv")
    normalizer = plan.normalizer(core)
    keys = normalizer(table.column(core.key_column))
    audit = gated_audit(plan, core, normalizer, [keys])
    new, keep = core.columns(keys)
    joined = attach(table, new)
    if keep is not None:
        joined = joined.filter(pa.array(keep))
    return publish.publish(joined, plan.out, plan.audit_json, audit, plan.run, plan.hasher,
                           plan.inputs)


def gated_audit(plan: Plan, core: Core, normalizer: keymod.KeyNormalizer,
                batches: Any) -> dict[str, Any]:
    """Observe every slice of keys, refuse merged keys, apply the gate; the audit."""
    tally = KeyTally()
    for keys in batches:
        tally.add(keys)
        core.observe(keys)
    normalizer.refuse_merges(plan.allow_key_merge, plan.features)
    core.gate(tally)
    audit = core.audit(tally)
    audit["merged_feature_keys"] = len(normalizer.merged)
    return audit
