"""The floor: pyarrow reading the same table once and writing it as parquet, nothing else.

``--stream`` reads and writes record batches (bounded memory, as the streaming join
does); without it the whole table is read and written at once (as the in-memory join).

    python benchmarks/floor.py IN.parquet OUT.parquet [--stream] [--batch-rows N]
"""

from __future__ import annotations

import argparse

import pyarrow.parquet as pq


def copy_whole(source: str, target: str) -> None:
    """Read the whole table (pyarrow's parquet, CSV or JSON-lines reader), write parquet."""
    if source.endswith(".csv"):
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(source)
    elif source.endswith(".jsonl"):
        import pyarrow.json as pjson

        table = pjson.read_json(source)
    else:
        table = pq.read_table(source)
    pq.write_table(table, target)


def copy_streaming(source: str, target: str, batch_rows: int) -> None:
    # pre_buffer=False: otherwise iter_batches buffers every row group ahead and memory
    # grows with the file (see materializer.streaming.open_parquet).
    reader = pq.ParquetFile(source, pre_buffer=False)
    with pq.ParquetWriter(target, reader.schema_arrow) as writer:
        for batch in reader.iter_batches(batch_size=batch_rows):
            writer.write_batch(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--batch-rows", type=int, default=1 << 20)
    args = parser.parse_args()
    if args.stream:
        copy_streaming(args.source, args.target, args.batch_rows)
    else:
        copy_whole(args.source, args.target)


if __name__ == "__main__":
    main()
