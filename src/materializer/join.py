"""The one join skeleton: checks, hashing, keys, the coverage gate, attaching, publishing.

A kind of join (``mos``, ``second_opinion``) supplies only its pure core, a
:class:`~materializer.plan.Core`: which columns it adds, what it counts over the
feature keys, its gate, and its audit. The skeleton runs the core either on the whole
table in memory or, for a large parquet table, in record batches
(:mod:`materializer.streaming`); both see the same keys through the same
:class:`~materializer.keys.KeyNormalizer`, so they give the same rows and the same audit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from materializer import files, publish, streaming, tableio
from materializer.plan import Core, Plan, attach, check_overwrite, gated_audit
from materializer.provenance import InputHasher

__all__ = ["Plan", "check_overwrite", "materialize"]


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
