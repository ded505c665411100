"""The same MOS join in the two engines a user would reach for instead: polars and DuckDB.

The join the benchmark gives the materializer, written as a user would in each: the key
regex extracted from the feature path, a left join onto the labels (keys as text),
parquet out. Each is what the engine's documentation recommends for files larger than
memory: a lazy scan with ``sink_parquet`` (polars), ``COPY (SELECT ...) TO`` (DuckDB).
The feature table is parquet, CSV or JSON lines, by its extension.

    python benchmarks/peers.py polars TABLE.parquet LABELS.csv OUT.parquet
    python benchmarks/peers.py duckdb TABLE.parquet LABELS.csv OUT.parquet
"""

from __future__ import annotations

import argparse

import generate


def polars_join(table: str, labels: str, out: str) -> None:
    import polars as pl

    mos = pl.scan_csv(labels, schema_overrides={"flickr_id": pl.String})
    scan = {"parquet": pl.scan_parquet, "csv": pl.scan_csv, "jsonl": pl.scan_ndjson}
    (scan[table.rsplit(".", 1)[1]](table)
     .with_columns(flickr_id=pl.col("path").str.extract(generate.REGEX, 1))
     .join(mos, on="flickr_id", how="left", maintain_order="left")
     .sink_parquet(out))


READERS = {"parquet": "read_parquet", "csv": "read_csv", "jsonl": "read_json"}


def duckdb_join(table: str, labels: str, out: str) -> None:
    import duckdb

    duckdb.sql(f"""
        COPY (
            SELECT f.*, l.mos
            FROM {READERS[table.rsplit(".", 1)[1]]}('{table}') f
            LEFT JOIN read_csv('{labels}', types={{'flickr_id': 'VARCHAR'}}) l
              ON regexp_extract(f.path, '{generate.REGEX}', 1) = l.flickr_id
        ) TO '{out}' (FORMAT parquet)
    """)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=("polars", "duckdb"))
    parser.add_argument("table")
    parser.add_argument("labels")
    parser.add_argument("out")
    args = parser.parse_args()
    {"polars": polars_join, "duckdb": duckdb_join}[args.engine](args.table, args.labels,
                                                                args.out)


if __name__ == "__main__":
    main()
