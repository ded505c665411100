"""The same joins in the two engines a user would reach for instead: polars and DuckDB.

The joins the benchmark gives the materializer, written as a user would in each, with
what each engine's documentation recommends for files larger than memory: a lazy scan
with ``sink_parquet`` (polars), ``COPY (SELECT ...) TO`` (DuckDB). The feature table is
parquet, CSV or JSON lines, by its extension; the output is parquet.
- ``mos``: the key regex extracted from the feature path, a left join onto the labels
  (keys as text).
- ``scores``: each competitor's JSON-lines score file joined on the basename of both
  paths (the second-opinion join's ``auto`` key), its score and runtime as
  ``second_opinion_<name>_score`` and ``..._runtime_ms``.

    python benchmarks/peers.py polars mos TABLE.parquet LABELS.csv OUT.parquet
    python benchmarks/peers.py duckdb scores TABLE.parquet OUT.parquet dover=D.jsonl ...
"""

from __future__ import annotations

import argparse
from typing import Any

import generate

BASENAME = r"([^/\\]+)$"


def polars_join(table: str, labels: str, out: str) -> None:
    import polars as pl

    mos = pl.scan_csv(labels, schema_overrides={"flickr_id": pl.String})
    (_polars_scan(table)
     .with_columns(flickr_id=pl.col("path").str.extract(generate.REGEX, 1))
     .join(mos, on="flickr_id", how="left", maintain_order="left")
     .sink_parquet(out))


def polars_scores(table: str, out: str, scores: dict[str, str]) -> None:
    import polars as pl

    joined = _polars_scan(table).with_columns(key=pl.col("path").str.extract(BASENAME, 1))
    for name, path in scores.items():
        base = f"second_opinion_{name}"
        joined = joined.join(pl.scan_ndjson(path).select(
            key=pl.col("path").str.extract(BASENAME, 1), **{
                f"{base}_score": pl.col("score"), f"{base}_runtime_ms": pl.col("runtime_ms")}),
            on="key", how="left", maintain_order="left")
    joined.drop("key").sink_parquet(out)


def _polars_scan(table: str) -> Any:  # a polars LazyFrame (polars loads lazily)
    import polars as pl

    scan = {"parquet": pl.scan_parquet, "csv": pl.scan_csv, "jsonl": pl.scan_ndjson}
    return scan[table.rsplit(".", 1)[1]](table)


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


def duckdb_scores(table: str, out: str, scores: dict[str, str]) -> None:
    import duckdb

    columns, joins = [], []
    for number, (name, path) in enumerate(scores.items()):
        columns += [f"s{number}.score AS second_opinion_{name}_score",
                    f"s{number}.runtime_ms AS second_opinion_{name}_runtime_ms"]
        joins.append(f"LEFT JOIN read_json('{path}') s{number} ON regexp_extract(f.path, "
                     f"'{BASENAME}', 1) = regexp_extract(s{number}.path, '{BASENAME}', 1)")
    duckdb.sql(f"""
        COPY (
            SELECT f.*, {", ".join(columns)}
            FROM {READERS[table.rsplit(".", 1)[1]]}('{table}') f
            {" ".join(joins)}
        ) TO '{out}' (FORMAT parquet)
    """)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("engine", choices=("polars", "duckdb"))
    parser.add_argument("join", choices=("mos", "scores"))
    parser.add_argument("table")
    parser.add_argument("inputs", nargs="+",
                        help="mos: LABELS.csv OUT; scores: OUT NAME=SCORES.jsonl ...")
    args = parser.parse_args()
    if args.join == "mos":
        labels, out = args.inputs
        {"polars": polars_join, "duckdb": duckdb_join}[args.engine](args.table, labels, out)
    else:
        out, *named = args.inputs
        scores = dict(item.split("=", 1) for item in named)
        {"polars": polars_scores, "duckdb": duckdb_scores}[args.engine](args.table, out,
                                                                      scores)


if __name__ == "__main__":
    main()
