"""Generate KoNViD-shaped benchmark data: per-frame feature tables, labels, manifests.

A feature table has one row per frame: ``path`` (``KoNViD_1k_videos/<10 digits>.mp4``,
many frames per clip, clips in order), ``frame`` (int32) and ``n_features`` float32
feature columns. Labels are a CSV ``flickr_id,mos`` (1-5) for every clip. Tables are
written in row groups of ``ROW_GROUP`` rows, so a 50M-row table is generated in
bounded memory.

    python benchmarks/generate.py table --rows 1000000 --out benchmarks/data/t1m.parquet
    python benchmarks/generate.py convert benchmarks/data/t1m.parquet benchmarks/data/t1m.csv
    python benchmarks/generate.py scores --rows 500000 --clips 1000000 --out dover.jsonl
    python benchmarks/generate.py manifest --tables 100 --rows 1000 --dir benchmarks/data/m100
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROW_GROUP = 1 << 20
FRAMES_PER_CLIP = 240
N_FEATURES = 30
REGEX = r"([0-9]{10})\.mp4$"
FIRST_ID = 3_000_000_000


def clip_ids(rows: int, frames_per_clip: int) -> np.ndarray:
    """Distinct 10-digit Flickr-like ids, one per clip (deterministic); the step shrinks
    for tens of millions of clips so every id keeps 10 digits."""
    clips = -(-rows // frames_per_clip)
    step = min(7919, (10**10 - 1 - FIRST_ID) // max(clips, 1))
    return FIRST_ID + np.arange(clips, dtype=np.int64) * step


def _chunk(start: int, stop: int, ids: np.ndarray, frames_per_clip: int,
           n_features: int, rng: np.random.Generator) -> pa.Table:
    """Rows [start, stop) of the table."""
    rows = np.arange(start, stop, dtype=np.int64)
    clip = rows // frames_per_clip
    # Dictionary-encode on the fly: only the clips in this chunk are formatted as text.
    first, last = int(clip[0]), int(clip[-1])
    names = pa.array([f"KoNViD_1k_videos/{i}.mp4" for i in ids[first:last + 1]])
    columns: dict[str, pa.Array] = {
        "path": names.take(pa.array(clip - first)),
        "frame": pa.array((rows % frames_per_clip).astype(np.int32)),
    }
    values = rng.standard_normal((n_features, stop - start), dtype=np.float32)
    for index in range(n_features):
        columns[f"f{index:02d}"] = pa.array(values[index])
    return pa.table(columns)


def write_table(out: Path, rows: int, *, n_features: int = N_FEATURES,
                frames_per_clip: int = FRAMES_PER_CLIP, seed: int = 0) -> None:
    """Write a feature table of ``rows`` rows to ``out`` (parquet), row group by row group."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # an interrupted run leaves no table
    ids = clip_ids(max(rows, 1), frames_per_clip)
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, ROW_GROUP):
            table = _chunk(start, min(rows, start + ROW_GROUP), ids, frames_per_clip,
                           n_features, rng)
            writer = writer or pq.ParquetWriter(partial, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    partial.replace(out)


def write_labels(out: Path, rows: int, frames_per_clip: int = FRAMES_PER_CLIP,
                 seed: int = 1) -> None:
    """A KoNViD-1k-like label CSV (``flickr_id,mos``) covering every clip of the table."""
    ids = clip_ids(max(rows, 1), frames_per_clip)
    mos = np.round(np.random.default_rng(seed).uniform(1.0, 5.0, len(ids)), 4)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["flickr_id,mos"] + [f"{i},{m}" for i, m in zip(ids.tolist(), mos.tolist(),
                                                               strict=True)]
    out.write_text("\n".join(lines) + "\n")


def write_manifest(folder: Path, tables: int, rows: int, label_files: int | None = None,
                   report_plots: bool | None = None, fmt: str = "yaml") -> Path:
    """``tables`` small tables, each with its own feature file; returns the manifest.

    Table ``i`` reads label file ``i % label_files`` (default: one label file per table,
    so changing one label file reruns exactly one table and the report). Data already in
    ``folder/data`` is kept. ``report_plots`` None leaves the key out (the default);
    ``fmt`` is ``yaml`` or ``json``.
    """
    label_files = label_files or tables
    data = folder / "data"
    for index in range(tables):
        if not (data / f"features-{index:04d}.parquet").exists():
            write_table(data / f"features-{index:04d}.parquet", rows, seed=index)
    for index in range(label_files):
        if not (data / f"labels-{index:04d}.csv").exists():
            write_labels(data / f"labels-{index:04d}.csv", rows, seed=index)
    entries = [{
        "id": f"t{index:04d}",
        "features": f"data/features-{index:04d}.parquet",
        "labels": [f"data/labels-{index % label_files:04d}.csv"],
        "out": f"results/mos/t{index:04d}.parquet",
        "audit_json": f"results/mos/t{index:04d}.audit.json",
    } for index in range(tables)]
    manifest: dict[str, object] = {
        "defaults": {"feature_key_column": "path", "label_key_column": "flickr_id",
                     "feature_key_regex": REGEX},
        "report_json": "results/reports/mos-labels.json",
        "report_md": "results/reports/mos-labels.md",
        "tables": entries,
    }
    if report_plots is not None:
        manifest["report_plots"] = report_plots
    path = folder / f"manifest.{fmt}"
    text = json.dumps(manifest, indent=1) if fmt == "json" \
        else yaml.safe_dump(manifest, sort_keys=False)
    path.write_text(text + ("\n" if fmt == "json" else ""))
    return path


def write_scores(out: Path, rows: int, competitor: str, seed: int = 0,
                 clips: int | None = None) -> None:
    """A DOVER-style JSON-lines score file: one row per clip for the first ``rows`` clips
    of a per-clip table of ``clips`` rows (``path``, ``competitor``, ``score``,
    ``runtime_ms``)."""
    ids = clip_ids(clips or rows, 1)[:rows]
    scores = np.random.default_rng(seed).random(rows).round(6)
    with open(out, "w", encoding="utf-8") as sink:
        for start in range(0, rows, ROW_GROUP):
            sink.writelines(
                f'{{"path": "KoNViD_1k_videos/{clip}.mp4", "competitor": "{competitor}", '
                f'"score": {score}, "runtime_ms": 12.5}}\n'
                for clip, score in zip(ids[start:start + ROW_GROUP].tolist(),
                                       scores[start:start + ROW_GROUP].tolist(), strict=True))


def convert(table: Path, target: Path) -> None:
    """The parquet table as CSV or JSON lines, row group by row group (pyarrow's writers;
    float32 features print as their shortest text)."""
    import pyarrow.csv as pcsv

    source = pq.ParquetFile(table)
    with open(target, "wb") as sink:
        for index in range(source.num_row_groups):
            chunk = source.read_row_group(index)
            if target.suffix == ".csv":
                pcsv.write_csv(chunk, sink, pcsv.WriteOptions(include_header=index == 0))
            else:
                lines = chunk.to_pandas().to_json(orient="records", lines=True)
                sink.write(lines.encode() + (b"" if lines.endswith("\n") else b"\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    table = sub.add_parser("table", help="one feature table and its labels")
    table.add_argument("--rows", type=int, required=True)
    table.add_argument("--out", type=Path, required=True, help="features .parquet")
    table.add_argument("--labels", type=Path, help="labels .csv (default: beside --out)")
    table.add_argument("--features", type=int, default=N_FEATURES)
    table.add_argument("--frames-per-clip", type=int, default=FRAMES_PER_CLIP,
                       help="rows per clip (1: one row per clip, a million distinct keys)")
    scores = sub.add_parser("scores", help="a JSON-lines score file of one competitor")
    scores.add_argument("--rows", type=int, required=True)
    scores.add_argument("--out", type=Path, required=True)
    scores.add_argument("--competitor", default="dover")
    scores.add_argument("--seed", type=int, default=0)
    scores.add_argument("--clips", type=int, help="rows of the per-clip table it scores "
                        "(default: --rows)")
    converted = sub.add_parser("convert", help="a parquet table as .csv or .jsonl")
    converted.add_argument("table", type=Path)
    converted.add_argument("target", type=Path)
    manifest = sub.add_parser("manifest", help="a folder with a manifest of small tables")
    manifest.add_argument("--tables", type=int, required=True)
    manifest.add_argument("--rows", type=int, default=1000)
    manifest.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    if args.what == "table":
        write_table(args.out, args.rows, n_features=args.features,
                    frames_per_clip=args.frames_per_clip)
        write_labels(args.labels or args.out.with_suffix(".labels.csv"), args.rows,
                     args.frames_per_clip)
    elif args.what == "scores":
        write_scores(args.out, args.rows, args.competitor, args.seed, args.clips)
    elif args.what == "convert":
        convert(args.table, args.target)
    else:
        print(write_manifest(args.dir, args.tables, args.rows))


if __name__ == "__main__":
    main()
