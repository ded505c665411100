"""The one join skeleton: checks, hashing, keys, the coverage gate, attaching, publishing.

A kind of join (``mos``, ``second_opinion``) supplies only its pure core, a
:class:`~materializer.plan.Core`: which columns it adds, what it counts over the
feature keys, its gate, and its audit. The skeleton runs the core either on the whole
table in memory or, for a large parquet table, in record batches
(:mod:`materializer.streaming`); both see the same keys through the same
:class:`~materializer.keys.KeyNormalizer`, so they give the same rows and the same audit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from materializer import files, publish, streaming, tableio
from materializer import keys as keymod
from materializer.errors import UsageError
from materializer.plan import Core, Observed, Plan, attach, check_overwrite, gated_audit
from materializer.provenance import InputHasher
from materializer.readers import format_of
from materializer.sources import Source, load

__all__ = ["Plan", "check_overwrite", "materialize"]


def materialize(plan: Plan, sources: Sequence[Source], key_of: KeyOf,
                prepare: Callable[[list[str], str], Core]) -> dict[str, Any]:
    """Run one join: ``prepare`` reads the sources and returns the core, given the
    feature table's column names and its key column (``key_of`` them). Returns the audit.

    A feature table given as a mapping (``read`` or ``align_to``), in a format only
    :mod:`materializer.readers` reads, or in JSON (whose column names cost a parse) is
    read whole, once, through :func:`materializer.sources.load`; parquet and CSV keep
    the streaming path.
    """
    files.table_format(plan.out)
    feature = plan.feature_source
    for source in (feature, *sources):
        format_of(source.path, source.read)
    read = [path for source in (feature, *sources) for path in source.paths]
    publish.check_outputs(plan.run, plan.out, plan.audit_json, read)
    plan.hasher = InputHasher(read, plan.run.base_dir)
    try:
        if feature.plain and format_of(feature.path) in ("parquet", "csv"):
            columns = tableio.read_columns(plan.feature_path, plan.features)
            core = prepare(columns, key_of(columns))
            if streaming.should_stream(plan.feature_path, plan.features, plan.out):
                return streaming.materialize_streaming(plan, core)
            return _in_memory(plan, core)
        table = load(feature, plan.run, text_key(key_of))
        return _in_memory(plan, prepare(table.column_names, key_of(table.column_names)), table)
    finally:
        plan.hasher.close()


KeyOf = Callable[[list[str]], str]
"""Which of a table's columns holds its keys (or a usage error saying why none)."""


def key_resolver(source: Source, explicit: str | None, candidates: Sequence[str],
                 flag: str) -> KeyOf:
    """The one rule for a key column: the option if given, else an aligned source's
    ``align_to.key_column``, else the first candidate present."""
    chosen = explicit or (source.align_to.key_column if source.align_to else None)

    def key_of(columns: list[str]) -> str:
        return keymod.resolve_column(columns, chosen, candidates,
                                     flag if explicit or not chosen else "align_to.key_column",
                                     source.path)
    return key_of


def text_key(key_of: KeyOf) -> tableio.TextColumns:
    """The key column to keep as text while a file is read. None when it is not among
    the file's own columns: it comes from an ``align_to`` reference (text already), or
    the error is raised once the file is read, with its columns."""
    def chosen(columns: list[str]) -> list[str]:
        try:
            return [key_of(columns)]
        except UsageError:
            return []
    return chosen


def _in_memory(plan: Plan, core: Core, table: pa.Table | None = None) -> dict[str, Any]:
    """The join on the whole feature table (read here unless already ``table``)."""
    if table is None:
        table = tableio.read_table(plan.feature_path, plan.features,
                                   text_columns=[core.key_column],
                                   csv_types=files.table_format(plan.out) != "csv")
    normalizer = plan.normalizer(core)
    slices: list[keymod.KeyColumn] = []

    def kept(batches: Iterator[tuple[keymod.KeyColumn, Observed]]) \
            -> Iterator[tuple[keymod.KeyColumn, Observed]]:
        for keys, values in batches:
            yield keys, values
            slices.append(keys)  # after the core's lookups, which go with the keys

    audit = gated_audit(plan, core, normalizer,
                        kept(streaming.key_slices(table, core, normalizer)))
    parts = [core.columns(keys) for keys in slices]  # as pass two would, slice by slice
    slices.clear()
    joined = attach(table, {name: pa.chunked_array([new[name] for new, _ in parts])
                            for name in parts[0][0]})
    if parts[0][1] is not None:
        joined = joined.filter(pa.array(np.concatenate([keep for _, keep in parts])))
    return publish.publish(joined, plan.out, plan.audit_json, audit, plan.run, plan.hasher,
                           plan.inputs)
