"""What the join skeleton and its streaming path share: the plan of one join, the core
a kind supplies, the tally of feature keys, attaching columns and the gate.

Kept apart from :mod:`materializer.join` so that the streaming path and the skeleton
both import it and not each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from materializer import keys as keymod
from materializer.errors import DataError
from materializer.options import enable
from materializer.provenance import InputHasher, RunContext
from materializer.sources import Source


class KeyTally:
    """Feature keys seen so far: rows, rows without a key, distinct keys in order."""

    def __init__(self) -> None:
        self.rows = 0
        self.unkeyed = 0
        self._batches: list[keymod.KeyColumn] = []

    def add(self, keys: keymod.KeyColumn) -> None:
        """Count a slice of keys (the lookups the core made on it come along)."""
        self.rows += len(keys)
        self.unkeyed += int(keys.unkeyed.sum())
        # Without its row codes (a per-frame batch has a million rows, a few keys).
        self._batches.append(keymod.KeyColumn(np.empty(0, dtype=np.intp), keys.keys,
                                              keys.hashes, keys.found))
        if len(self._batches) > 64:  # bounded: fold the distinct keys now and then
            self._settle()

    def _settle(self) -> None:
        """The batches' keys as one column of distinct keys, on the hashes they carry,
        with the lookups every batch made."""
        batches = self._batches
        if len(batches) < 2:
            return
        keys = pa.concat_arrays([b.keys for b in batches])
        codes, distinct, hashes = keymod.encode(keys, np.concatenate([b.hashes for b in batches]))
        first = slice(None) if len(distinct) == len(keys) else keymod.first_rows(codes)
        found = {name: np.concatenate([b.found[name] for b in batches])[first]
                 for name in set.intersection(*(set(b.found) for b in batches))}
        self._batches = [keymod.KeyColumn(np.arange(len(distinct)), distinct, hashes, found)]

    @property
    def distinct(self) -> keymod.KeyColumn:
        """Distinct keys (Arrow text) in order of first appearance, as in one pass, one
        row each, with their hashes and lookups."""
        self._settle()
        if not self._batches:
            return keymod.KeyColumn.empty()
        only = self._batches[0]
        return keymod.KeyColumn(np.arange(len(only.keys)), only.keys, only.hashes, only.found)


Observed = Mapping[str, pa.Array | pa.ChunkedArray]
"""One slice of the observed feature columns, by name."""


class Core(Protocol):
    """What one kind of join adds to the skeleton."""

    key_column: str
    regex: re.Pattern[str] | None

    def observed_columns(self, columns: Sequence[str]) -> list[str]:
        """Feature columns besides the key that ``observe`` needs, given the table's
        columns: pass one reads them with the keys. Raise to refuse a table without one."""

    def observe(self, keys: keymod.KeyColumn, values: Observed) -> None:
        """Count what the gate and the audit need, for one slice of feature rows: its keys
        and the observed columns' values."""

    def gate(self, tally: KeyTally) -> None:
        """After every key was seen, before anything is written: raise to refuse."""

    def columns(self, keys: keymod.KeyColumn) -> tuple[dict[str, pa.Array], np.ndarray | None]:
        """The new columns for a slice of feature keys, and which rows to keep (None: all)."""

    def audit(self, tally: KeyTally) -> dict[str, Any]:
        """The audit fields (the skeleton adds provenance, merges and streaming)."""


@dataclass
class Plan:
    """One join as the skeleton runs it: paths as written and where they resolve."""

    feature_source: Source
    out: str
    audit_json: str | None
    run: RunContext
    inputs: Mapping[str, Any]
    """Provenance name -> source or list of sources (see ``publish.publish``)."""
    allow_key_merge: bool
    key_normalize: str
    hasher: InputHasher = field(init=False)

    @property
    def features(self) -> str:
        """The feature table's path as written."""
        return self.feature_source.path

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
    existing = [c for c in targets if c in feature_columns]
    if existing and not overwrite:
        raise DataError(f"refusing to overwrite existing {what} {', '.join(existing)}; "
                        f"{enable('overwrite')}", file=file, column=existing[0])


def gated_audit(plan: Plan, core: Core, normalizer: keymod.KeyNormalizer,
                batches: Iterable[tuple[keymod.KeyColumn, Observed]]) -> dict[str, Any]:
    """Observe every slice of keys (with the observed columns), refuse merged keys, apply
    the gate; the audit."""
    tally = KeyTally()
    for keys, values in batches:
        core.observe(keys, values)  # first: its lookups then go with the keys to the tally
        tally.add(keys)
    normalizer.refuse_merges(plan.allow_key_merge, plan.features)
    core.gate(tally)
    audit = core.audit(tally)
    audit["merged_feature_keys"] = len(normalizer.merged)
    return audit
