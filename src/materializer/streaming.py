"""The streaming path: parquet feature tables larger than memory, in record batches.

Pass one reads only the key column, batch by batch, to compute coverage and apply the
match-rate gate before anything is written. Pass two reads each record batch, attaches
the label columns with the same functions as the in-memory path, and writes it to a
temporary parquet file that is published atomically. Peak memory is bounded by the
batch size and the label table, not by the feature table.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from materializer import keys as keymod
from materializer import mos, publish, tableio
from materializer.options import MosOptions
from materializer.provenance import InputHasher, RunContext

log = logging.getLogger("materializer")

# MATERIALIZER_STREAM: "auto" (stream parquet inputs above the threshold), "always", "never".
STREAM_ENV = "MATERIALIZER_STREAM"
BATCH_ENV = "MATERIALIZER_BATCH_ROWS"
THRESHOLD_BYTES = 256 * 1024 * 1024
DEFAULT_BATCH_ROWS = 1 << 20
PROGRESS_SECONDS = 10.0


def should_stream(path: Path, features: str, out: str) -> bool:
    """Stream when both ends are parquet and the input is large, or when forced."""
    mode = os.environ.get(STREAM_ENV, "auto")
    if mode == "never" or tableio.table_format(features) != "parquet" \
            or tableio.table_format(out) != "parquet":
        return False
    return mode == "always" or path.stat().st_size > THRESHOLD_BYTES


def _batch_rows() -> int:
    return max(1, int(os.environ.get(BATCH_ENV, DEFAULT_BATCH_ROWS)))


class Progress:
    """A log line every few seconds: rows done, rate, time left."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_SECONDS and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate else float("inf")
        log.info("%s: %d/%d rows (%.0f%%), %.0f rows/s, about %.0f s left", self.label, done,
                 self.total, 100.0 * done / max(self.total, 1), rate, left)


def _key_batches(reader: pq.ParquetFile, key_column: str, options: MosOptions,
                 regex: Any) -> Iterator[tuple[pa.RecordBatch, pd.Series]]:
    for batch in reader.iter_batches(batch_size=_batch_rows(), columns=[key_column]):
        yield batch, keymod.normalize(batch.column(0), key_column, options.key_normalize, regex)


def _coverage(reader: pq.ParquetFile, key_column: str, options: MosOptions, regex: Any,
              labels: mos.LabelSet) -> tuple[mos.Coverage, list[str]]:
    """Pass one: coverage over the key column alone, batch by batch."""
    known = pd.Index(labels.table["key"])
    seen: set[str] = set()
    unkeyed = matched_rows = rows = 0
    for _, keys in _key_batches(reader, key_column, options, regex):
        keyed = keys.dropna().to_numpy(object)
        rows += len(keys)
        unkeyed += int(keys.isna().sum())
        matched_rows += int((known.get_indexer(keyed) >= 0).sum())
        seen.update(pd.unique(keyed))
    unique = np.array(sorted(seen), dtype=object)
    in_labels = known.get_indexer(unique) >= 0
    cov = mos.Coverage(total_keys=len(unique), matched_keys=int(in_labels.sum()),
                       unkeyed_rows=unkeyed, matched_rows=matched_rows, input_rows=rows,
                       unmatched_feature_keys=[str(k) for k in unique[~in_labels][:5]])
    present = pd.Index(unique)
    label_missing = present.get_indexer(labels.table["key"].to_numpy(object)) < 0
    return cov, [str(k) for k in labels.table["key"][label_missing].iloc[:5]]


def materialize_streaming(
    features: str, labels: Sequence[str], out: str, audit_json: str | None,
    options: MosOptions, run: RunContext, hasher: InputHasher, key_column: str,
    feature_regex: Any, label_set: mos.LabelSet, targets: Sequence[str],
) -> dict[str, Any]:
    """The MOS join for a parquet table read and written in record batches."""
    path = run.resolve(features)
    reader = pq.ParquetFile(path)
    cov, unmatched_labels = _coverage(reader, key_column, options, feature_regex, label_set)
    mos.gate(cov, options.min_match_rate, features)
    progress = Progress(cov.input_rows, f"{features} -> {out}")

    def write(target: Path) -> None:
        writer = None
        done = 0
        try:
            for batch in reader.iter_batches(batch_size=_batch_rows()):
                keys = keymod.normalize(batch.column(key_column), key_column,
                                        options.key_normalize, feature_regex)
                table = mos.attach(pa.Table.from_batches([batch]),
                                   mos.label_columns(keys, label_set, targets,
                                                     options.status_column))
                if writer is None:
                    writer = pq.ParquetWriter(target, table.schema)
                writer.write_table(table)
                done += batch.num_rows
                progress.update(done)
            if writer is None:  # an empty table still gets its schema and new columns
                empty = reader.schema_arrow.empty_table()
                table = mos.attach(empty, mos.label_columns(pd.Series([], dtype=object),
                                                            label_set, targets,
                                                            options.status_column))
                pq.write_table(table, target)
        finally:
            if writer is not None:
                writer.close()

    kept = [c for c in mos.FEATURE_OWNED_EXTRAS if c in label_set.extras and c not in targets]
    audit = mos.build_audit(features, out, options, label_set, key_column, cov, labels,
                            cov.input_rows, unmatched_labels, kept)
    audit["streamed"] = {"batch_rows": _batch_rows()}
    return publish.publish(pa.table({}), out, audit_json, audit, run, hasher,
                           {"features": features, "labels": list(labels)}, write=write)
