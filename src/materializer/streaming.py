"""The streaming path: parquet feature tables larger than memory, in record batches.

Pass one reads only the key column (and the columns the core observes, such as ``mos``
for the second-opinion agreement audit), batch by batch, so the join's core can count and
apply its gate before anything is written. Pass two reads each record batch, attaches
the core's columns (the same functions as the in-memory path, for either kind of join),
and writes it to a temporary parquet file that is published atomically. Peak memory is
bounded by the batch size and the label or score table, not by the feature table.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from materializer import files, publish, tableio
from materializer import keys as keymod
from materializer.plan import Core, Observed, Plan, attach, gated_audit

log = logging.getLogger("materializer")
T = TypeVar("T")
U = TypeVar("U")

# MATERIALIZER_STREAM: "auto" (stream parquet inputs above the threshold), "always", "never".
STREAM_ENV = "MATERIALIZER_STREAM"
BATCH_ENV = "MATERIALIZER_BATCH_ROWS"
THRESHOLD_ENV = "MATERIALIZER_STREAM_THRESHOLD_BYTES"
PROGRESS_ENV = "MATERIALIZER_PROGRESS_SECONDS"
THRESHOLD_BYTES = 256 * 1024 * 1024
DEFAULT_BATCH_ROWS = 1 << 18
"""Rows a record batch (and a row group of the output, as polars writes them): against
2^20-row batches, a 10M-row per-frame join took 0.83x the time and half the memory
(0.70 against 1.28 GiB) on the project's machine, mostly the kernel clearing fewer
fresh pages."""
PROGRESS_SECONDS = 10.0


def should_stream(path: Path, features: str, out: str) -> bool:
    """Stream when both ends are parquet and the input is large, or when forced."""
    mode = os.environ.get(STREAM_ENV, "auto")
    if mode == "never" or files.table_format(features) != "parquet" \
            or files.table_format(out) != "parquet":
        return False
    threshold = int(os.environ.get(THRESHOLD_ENV, THRESHOLD_BYTES))
    return mode == "always" or path.stat().st_size > threshold


def _batch_rows() -> int:
    return max(1, int(os.environ.get(BATCH_ENV, DEFAULT_BATCH_ROWS)))


def open_parquet(path: Path, **options: Any) -> pq.ParquetFile:
    """A reader that holds one batch at a time.

    ``pre_buffer`` (on by default) makes ``iter_batches`` fetch the column chunks of
    every row group ahead, so memory grows with the file: 1.9 GiB for a 1.3 GiB table
    of 10M rows against 0.8 GiB without it, at the same CPU time on a local disk.
    """
    return pq.ParquetFile(path, pre_buffer=False, **options)


def read_batches(reader: pq.ParquetFile, path: Path, written: str,
                 **options: Any) -> Iterator[pa.RecordBatch]:
    """``reader.iter_batches``, with a corrupt or unreadable page turned into one
    clear error naming the file (as the in-memory read does), not a traceback or a
    "cannot write output" from the write it interrupts."""
    batches = reader.iter_batches(**options)
    while True:
        with tableio.reading(path, written):
            batch = next(batches, None)
        if batch is None:
            return
        yield batch


def mapped_ahead(work: Callable[[T], U], items: Iterator[T], workers: int = 2) \
        -> Iterator[U]:
    """``work`` on each of ``items``, in order, on ``workers`` threads: up to that many
    items are worked on while the caller uses the one before (two cores normalise a
    stream's keys twice as fast as one)."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="work-ahead") as pool:
        pending: deque[Future[U]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def read_ahead(batches: Iterator[T]) -> Iterator[T]:
    """Yield ``batches``, making the next one in a thread while this one is used.

    Parquet decoding and encoding each keep about one core busy and release the GIL,
    as do Arrow's and NumPy's kernels on the keys; overlapping them hides most of the
    read on two cores, for one more batch in memory.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as pool:
        pending = pool.submit(next, batches, None)
        while (batch := pending.result()) is not None:
            pending = pool.submit(next, batches, None)
            yield batch


class Progress:
    """A log line every few seconds: rows done, rate, time left."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.every = float(os.environ.get(PROGRESS_ENV, PROGRESS_SECONDS))
        self.start = self.last = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate else float("inf")
        log.info("%s: %d/%d rows (%.0f%%), %.0f rows/s, about %.0f s left", self.label, done,
                 self.total, 100.0 * done / max(self.total, 1), rate, left)


def _key_batches(plan: Plan, core: Core, normalize: keymod.KeyNormalizer) \
        -> Iterator[tuple[keymod.KeyColumn, Observed]]:
    """Pass one: the key column and the core's observed columns (such as ``mos`` for the
    agreement audit), batch by batch, as normalised keys and values.

    A key column that repeats its keys is read as a dictionary (string columns in
    parquet usually are), so a batch costs its integer indices plus the few distinct
    clips it holds; one with a key per row is read as plain text, which Arrow would
    otherwise hash into a dictionary of every row.
    """
    path = plan.feature_path
    reader = open_parquet(path, read_dictionary=[core.key_column]
                          if _repeats_keys(path, plan.features, core.key_column) else None)
    observed = core.observed_columns(reader.schema_arrow.names)
    columns = list(dict.fromkeys([core.key_column, *observed]))
    batches = read_batches(reader, path, plan.features, batch_size=_batch_rows(),
                           columns=columns)

    def prepared(batch: pa.RecordBatch) -> tuple[keymod.Prepared, Observed]:
        return (normalize.prepare(batch.column(core.key_column)),
                {name: batch.column(name) for name in observed})

    # Read in one thread, normalised in two while the batch before is counted and spilled.
    for keys, values in mapped_ahead(prepared, read_ahead(batches)):
        yield normalize.keep(keys), values


def key_slices(table: pa.Table, core: Core, normalize: keymod.KeyNormalizer) \
        -> Iterator[tuple[keymod.KeyColumn, Observed]]:
    """A table in memory as pass one sees a stream: its key column and observed columns
    in slices of a batch, the keys normalised on two threads (an empty table is one empty
    slice). A table of one row per clip normalises its keys in about half the time."""
    rows = _batch_rows()
    column = table.column(core.key_column)
    observed = core.observed_columns(table.column_names)
    starts = range(0, max(table.num_rows, 1), rows)
    slices = mapped_ahead(lambda at: normalize.prepare(column.slice(at, rows)), iter(starts))
    for at, keys in zip(starts, slices, strict=True):
        yield normalize.keep(keys), {name: table.column(name).slice(at, rows)
                                     for name in observed}


def _repeats_keys(path: Path, written: str, column: str) -> bool:
    """Whether the first rows of ``column`` repeat their keys (frames of a clip), not
    one key a row: the reader's choice, which changes only the speed, never a key."""
    with tableio.reading(path, written):
        first = next(open_parquet(path).iter_batches(batch_size=1 << 16, columns=[column]),
                     None)
    if first is None or not pa.types.is_string(first.column(0).type):
        return True
    return not keymod.mostly_distinct(first.column(0))


class KeySpill:
    """Pass one's normalised keys, on disk for pass two: normalising a batch of a table
    with one row per clip costs more than reading and writing it, so it is done once.

    Two Arrow IPC streams in the system's temporary folder, a batch in each per batch of
    pass one: the rows as a dictionary column (row codes into the batch's distinct keys;
    four bytes a row plus the keys), and per distinct key its hash and the positions
    the core's lookups found (eight bytes each), which pass two would otherwise make
    again.
    """

    SCHEMA = pa.schema([("key", pa.dictionary(pa.int32(), pa.string()))])

    def __init__(self, folder: Path) -> None:
        self.path, self.per_key = folder / "keys.arrows", folder / "per-key.arrows"
        self._files: list[pa.OSFile] = []
        self._batches: Iterator[tuple[pa.RecordBatch, pa.RecordBatch]] = iter(())
        self._pending = keymod.KeyColumn.empty()

    def keeping(self, batches: Iterator[tuple[keymod.KeyColumn, Observed]]) \
            -> Iterator[tuple[keymod.KeyColumn, Observed]]:
        """``batches``, each key column written to the spill once it has been used (by
        then the core has made its lookups on it)."""
        with pa.ipc.new_stream(str(self.path), self.SCHEMA) as writer:
            per_key, schema = None, pa.schema([])
            try:
                for keys, values in batches:
                    yield keys, values
                    codes = pa.array(keys.codes.astype(np.int32), mask=keys.unkeyed)
                    writer.write_batch(pa.record_batch(
                        [pa.DictionaryArray.from_arrays(codes, keys.keys)], schema=self.SCHEMA))
                    columns = {"hash": keys.hashes, **keys.found}
                    if per_key is None:
                        schema = pa.schema([(name, pa.from_numpy_dtype(v.dtype))
                                            for name, v in columns.items()])
                        per_key = pa.ipc.new_stream(str(self.per_key), schema)
                    per_key.write_batch(pa.record_batch(
                        [pa.array(columns[name]) for name in schema.names], schema=schema))
            finally:
                if per_key is not None:
                    per_key.close()

    def take(self, rows: int) -> keymod.KeyColumn:
        """The key column of the next ``rows`` rows, in the order pass one saw them."""
        if not self._files:
            self._files = [pa.OSFile(str(self.path)), pa.OSFile(str(self.per_key))]
            self._batches = zip(*(pa.ipc.open_stream(f) for f in self._files), strict=True)
        parts, have = [], 0
        while have < rows:
            if not len(self._pending):
                self._pending = _key_column(*next(self._batches))
            part = self._pending
            need = min(rows - have, len(part))
            parts.append(keymod.KeyColumn(part.codes[:need], part.keys, part.hashes, part.found))
            self._pending = keymod.KeyColumn(part.codes[need:], part.keys, part.hashes,
                                             part.found)
            have += need
        return joined(parts)

    def close(self) -> None:
        for file in self._files:
            file.close()


def _key_column(rows: pa.RecordBatch, per_key: pa.RecordBatch) -> keymod.KeyColumn:
    column = rows.column(0)
    codes = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
    found = {name: per_key.column(name).to_numpy() for name in per_key.schema.names[1:]}
    return keymod.KeyColumn(codes.astype(np.intp), column.dictionary,
                            per_key.column("hash").to_numpy(), found)


def joined(parts: list[keymod.KeyColumn]) -> keymod.KeyColumn:
    """Key columns one after the other (their keys appended: a key may then repeat)."""
    if len(parts) == 1:
        return parts[0]
    shift = np.cumsum([0] + [len(part.keys) for part in parts[:-1]])
    codes = np.concatenate([np.where(part.codes >= 0, part.codes + offset, -1)
                            for part, offset in zip(parts, shift, strict=True)])
    return keymod.KeyColumn(codes, pa.concat_arrays([part.keys for part in parts]),
                            np.concatenate([part.hashes for part in parts]),
                            {name: np.concatenate([part.found[name] for part in parts])
                             for name in parts[0].found})


def materialize_streaming(plan: Plan, core: Core) -> dict[str, Any]:
    """The join for a parquet table read and written in record batches.

    Pass one observes every key and applies the gate before anything is written; pass
    two attaches the core's columns batch by batch (keeping the rows it keeps), with the
    keys pass one normalised.
    """
    with tempfile.TemporaryDirectory(prefix="materializer-keys-") as scratch:
        spill = KeySpill(Path(scratch))
        try:
            return _two_passes(plan, core, spill)
        finally:
            spill.close()


def _two_passes(plan: Plan, core: Core, spill: KeySpill) -> dict[str, Any]:
    path = plan.feature_path
    normalize = plan.normalizer(core)
    audit = gated_audit(plan, core, normalize,
                        spill.keeping(_key_batches(plan, core, normalize)))
    audit["streamed"] = {"batch_rows": _batch_rows()}
    reader = open_parquet(path)
    progress = Progress(reader.metadata.num_rows, f"{plan.features} -> {plan.out}")

    def attached(batch: pa.RecordBatch | None) -> pa.Table:
        table = pa.Table.from_batches([batch]) if batch is not None \
            else reader.schema_arrow.empty_table()
        keys = spill.take(batch.num_rows) if batch is not None else keymod.KeyColumn.empty()
        new, keep = core.columns(keys)
        table = attach(table, new)
        return table.filter(pa.array(keep)) if keep is not None else table

    def write(sink: io.RawIOBase) -> None:
        writer = None
        done = 0
        try:
            batches = read_batches(reader, path, plan.features, batch_size=_batch_rows())
            # Read and attached in one thread while the batch before is encoded here.
            for rows, table in read_ahead((b.num_rows, attached(b)) for b in batches):
                if writer is None:
                    writer = pq.ParquetWriter(sink, table.schema,
                                              **tableio.parquet_options(table.schema))
                writer.write_table(table)
                done += rows
                if done < progress.total:
                    progress.update(done)
            if writer is None:  # an empty table still gets its schema and new columns
                tableio.write_table_to(attached(None), "parquet", sink)
        finally:
            if writer is not None:
                writer.close()
        sink.flush()  # the last line only once the rows are written (or the error)
        if progress.total:
            progress.update(done)

    return publish.publish(pa.table({}), plan.out, plan.audit_json, audit, plan.run,
                           plan.hasher, plan.inputs, write=write)
