"""Measure the materializer against the floor, side by side, whole processes.

Each measurement is a fresh process (the console command as a user runs it, or the
floor script); wall time comes from the clock, CPU time and peak memory (max RSS) from
the child's own ``wait4`` rusage. Runs are interleaved (floor, materializer, floor,
...) so that load from other users of the machine hits both alike; the median of
``--repeat`` runs is reported. Results go to ``benchmarks/results/*.json``.

    python benchmarks/run.py rows --rows 1000000 10000000 --repeat 3
    python benchmarks/run.py rows --rows 50000000 --repeat 1
    python benchmarks/run.py manifests --tables 10 100 1000
    python benchmarks/run.py manifests --tables 1000 --report-plots true --format json
    python benchmarks/run.py peers --rows 1000000 10000000 --shape per-frame per-clip
    python benchmarks/run.py peers --rows 1000000 --format csv jsonl
    python benchmarks/run.py scores --rows 1000000 --score-rows 500000 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import generate

from materializer.streaming import THRESHOLD_BYTES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
RESULTS = HERE / "results"
BIN = Path(sys.executable).parent


def measure(argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``argv`` to completion; wall seconds, CPU seconds and peak RSS of the child."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr_text = process.stderr.read().decode() if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}):\n{stderr_text}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_mib": usage.ru_maxrss / 1024.0}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                  .splitlines() if line.startswith("MemTotal"))
    return {"cpu": model, "nproc": os.cpu_count(), "ram_gib": round(mem_kb / 2**20, 1),
            "python": platform.python_version(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3]}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs, plus the raw runs."""
    return {key: statistics.median(run[key] for run in runs)
            for key in ("wall_s", "cpu_s", "peak_mib")} | {"runs": runs}


def interleaved(cases: dict[str, Callable[[], dict[str, Any]]], repeat: int) \
        -> dict[str, dict[str, Any]]:
    """Run every case once per round, ``repeat`` rounds; medians per case."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
    for round_number in range(repeat):
        for name, case in cases.items():
            runs[name].append(case())
            last = runs[name][-1]
            print(f"  round {round_number + 1} {name}: {last['wall_s']:.2f} s wall, "
                  f"{last['cpu_s']:.2f} s CPU, {last['peak_mib']:.0f} MiB", flush=True)
    return {name: summarise(found) for name, found in runs.items()}


# --- one big table ---------------------------------------------------------------------


SHAPES = {"per-frame": generate.FRAMES_PER_CLIP, "per-clip": 1}
"""Rows per clip: KoNViD-like frame tables, and one row per clip (KoNViD-150k, LSVQ)."""


def ensure_table(rows: int, features: int, shape: str = "per-frame") -> tuple[Path, Path]:
    """The feature table and label CSV for ``rows`` rows, generated once."""
    stem = "konvid" if shape == "per-frame" else "clips"
    table = DATA / f"{stem}-{rows}x{features}.parquet"
    labels = table.with_suffix(".labels.csv")
    if not (table.exists() and labels.exists()):
        # In a child process: a child's peak memory (max RSS) counts the memory it was
        # forked from, so this process must stay small (10M clip names are 2 GB here).
        print(f"generating {table.name} ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "generate.py"), "table", "--rows",
                        str(rows), "--out", str(table), "--labels", str(labels),
                        "--features", str(features), "--frames-per-clip",
                        str(SHAPES[shape])], check=True)
    return table, labels


def mos_argv(table: Path, labels: Path, out: Path) -> list[str]:
    return [str(BIN / "materialize-mos-labels"), "--features", table.name,
            "--labels", labels.name, "--out", out.name, "--audit-json", out.name + ".json",
            "--feature-key-column", "path", "--label-key-column", "flickr_id",
            "--feature-key-regex", generate.REGEX]


def bench_rows(rows: int, features: int, repeat: int, forced: bool) -> dict[str, Any]:
    """Floor and materializer on one table size, interleaved."""
    table, labels = ensure_table(rows, features)
    out = DATA / "out.parquet"
    stream = table.stat().st_size > THRESHOLD_BYTES  # as the command decides in auto
    floor = [sys.executable, str(HERE / "floor.py"), table.name, out.name]
    cases: dict[str, Callable[[], dict[str, Any]]] = {
        "floor": lambda: measure(floor + (["--stream"] if stream else []), DATA),
        "materializer": lambda: measure(mos_argv(table, labels, out), DATA),
    }
    if forced:  # the other path too, forced, for comparison
        other = "never" if stream else "always"
        cases[f"materializer ({other})"] = lambda: measure(
            mos_argv(table, labels, out), DATA, {"MATERIALIZER_STREAM": other})
    print(f"{rows} rows x {features} features ({table.stat().st_size / 2**20:.0f} MiB), "
          f"{'streaming' if stream else 'in memory'}:", flush=True)
    found = interleaved(cases, repeat)
    for stale in DATA.glob("out.parquet*"):
        stale.unlink()
    floor_med = found["floor"]
    ratios = {name: {"wall": found[name]["wall_s"] / floor_med["wall_s"],
                     "peak": found[name]["peak_mib"] / floor_med["peak_mib"]}
              for name in found if name != "floor"}
    return {"rows": rows, "features": features, "parquet_mib": table.stat().st_size / 2**20,
            "streamed": stream, "results": found, "ratio_vs_floor": ratios}


def in_format(table: Path, fmt: str) -> Path:
    """The parquet feature table as CSV or JSON lines (written once, in a child)."""
    if fmt == "parquet":
        return table
    converted = table.with_suffix(f".{fmt}")
    if not converted.exists():
        print(f"writing {converted.name} ...", flush=True)
        subprocess.run([sys.executable, str(HERE / "generate.py"), "convert", str(table),
                        str(converted)], check=True)
    return converted


def bench_peers(rows: int, features: int, shape: str, repeat: int,
                fmt: str = "parquet") -> dict[str, Any]:
    """The same join in polars and DuckDB beside the materializer and the floor."""
    parquet, labels = ensure_table(rows, features, shape)
    table = in_format(parquet, fmt)
    out = DATA / "out.parquet"
    stream = fmt == "parquet" and table.stat().st_size > THRESHOLD_BYTES
    floor = [sys.executable, str(HERE / "floor.py"), table.name, out.name]

    cases: dict[str, Callable[[], dict[str, Any]]] = {
        "floor": lambda: measure(floor + (["--stream"] if stream else []), DATA),
        **{engine: peer(engine, "mos", table.name, labels.name, out.name)
           for engine in ("polars", "duckdb")},
        "materializer": lambda: measure(mos_argv(table, labels, out), DATA),
    }
    print(f"{shape}, {rows} rows x {features} features, {fmt} "
          f"({table.stat().st_size / 2**20:.0f} MiB):", flush=True)
    found = interleaved(cases, repeat)
    for stale in DATA.glob("out.parquet*"):
        stale.unlink()
    return {"rows": rows, "features": features, "shape": shape, "format": fmt,
            "streamed": stream, "input_mib": table.stat().st_size / 2**20, "results": found,
            "vs_best_peer": vs_best_peer(found)}


def peer(engine: str, *args: str) -> Callable[[], dict[str, Any]]:
    """One run of ``peers.py ENGINE ARGS...`` in the data folder."""
    argv = [sys.executable, str(HERE / "peers.py"), engine, *args]
    return lambda: measure(argv, DATA)


def vs_best_peer(found: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The materializer's wall time over the faster peer's, peak over the smaller's."""
    mine = found["materializer"]
    return {"wall": mine["wall_s"] / min(found[p]["wall_s"] for p in ("polars", "duckdb")),
            "peak": mine["peak_mib"] / min(found[p]["peak_mib"] for p in ("polars", "duckdb"))}


def bench_scores(rows: int, score_rows: int, features: int, repeat: int) -> dict[str, Any]:
    """The second-opinion join (two JSON-lines score files of ``score_rows`` clips each
    onto a per-clip table) in polars and DuckDB beside the materializer."""
    table, _ = ensure_table(rows, features, "per-clip")
    scores = {}
    for seed, name in enumerate(("dover", "fastvqa")):
        scores[name] = DATA / f"scores-{name}-{score_rows}-of-{rows}.jsonl"
        if not scores[name].exists():
            subprocess.run([sys.executable, str(HERE / "generate.py"), "scores", "--rows",
                            str(score_rows), "--clips", str(rows), "--out", str(scores[name]),
                            "--competitor", name, "--seed", str(seed)], check=True)
    out = DATA / "out.parquet"
    named = [f"{name}={path.name}" for name, path in scores.items()]

    mine = [str(BIN / "materialize-second-opinion-features"), "--features", table.name,
            *(f"--scores={path.name}" for path in scores.values()), "--out", out.name,
            "--audit-json", out.name + ".json"]
    cases = {**{engine: peer(engine, "scores", table.name, out.name, *named)
                for engine in ("polars", "duckdb")},
             "materializer": lambda: measure(mine, DATA)}
    print(f"second opinion, {rows} clips, two score files of {score_rows} rows:", flush=True)
    found = interleaved(cases, repeat)
    for stale in DATA.glob("out.parquet*"):
        stale.unlink()
    return {"rows": rows, "score_rows": score_rows, "features": features, "results": found,
            "vs_best_peer": vs_best_peer(found)}


# --- many small tables -----------------------------------------------------------------


PLOTS = {"auto": None, "true": True, "false": False}


def variant(tables: int, plots: str, fmt: str) -> str:
    """Result and folder name: ``manifest-1000``, ``manifest-1000-plots-true-json``, ..."""
    return f"manifest-{tables}" + ("" if plots == "auto" else f"-plots-{plots}") \
        + ("" if fmt == "yaml" else f"-{fmt}")


def snakemake(folder: Path, manifest: Path, *extra: str) -> list[str]:
    return [str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), "-d",
            str(folder), "--configfile", str(manifest), "-c", "2", *extra]


def bench_manifest(tables: int, rows: int, plots: str, fmt: str) -> dict[str, Any]:
    """Plan, full run and one-label-change rerun of a manifest of ``tables`` tables."""
    folder = DATA / variant(tables, plots, fmt)
    shared = DATA / f"tables-{tables}"  # the tables' data, generated once per count
    if not (shared / "data").exists():
        print(f"generating {shared.name} ...", flush=True)
        generate.write_manifest(shared, tables, rows)
    if not (folder / "data").exists():
        shutil.copytree(shared / "data", folder / "data")
    manifest = generate.write_manifest(folder, tables, rows, report_plots=PLOTS[plots],
                                       fmt=fmt)
    for produced in ("results", ".snakemake", "logs"):
        shutil.rmtree(folder / produced, ignore_errors=True)
    figures = {"plan": measure(snakemake(folder, manifest, "-n"), folder),
               "full_run": measure(snakemake(folder, manifest), folder)}
    before = output_times(folder)
    if len(before) != tables:
        raise RuntimeError(f"{len(before)} of {tables} tables written")
    label = folder / "data" / "labels-0000.csv"
    label.write_text(label.read_text() + f"9{time.time_ns() % 10**9:09d},3.0\n")
    figures["one_change_plan"] = measure(snakemake(folder, manifest, "-n"), folder)
    figures["one_change_rerun"] = measure(snakemake(folder, manifest), folder)
    after = output_times(folder)
    rerun = sorted(name for name, when in after.items() if before.get(name) != when)
    figures["noop_plan"] = measure(snakemake(folder, manifest, "-n"), folder)
    for name, figure in figures.items():
        print(f"  {variant(tables, plots, fmt)} {name}: {figure['wall_s']:.2f} s wall, "
              f"{figure['cpu_s']:.2f} s CPU, {figure['peak_mib']:.0f} MiB", flush=True)
    return {"tables": tables, "rows_per_table": rows, "report_plots": plots,
            "manifest_format": fmt, "results": figures, "rerun_after_one_change": rerun}


def output_times(folder: Path) -> dict[str, int]:
    """Modification time of every table output, to see what a rerun rewrote."""
    return {p.name: p.stat().st_mtime_ns for p in (folder / "results" / "mos").glob("*.parquet")}


def save(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    rows = sub.add_parser("rows", help="one table per size: floor vs materializer")
    rows.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    rows.add_argument("--features", type=int, default=generate.N_FEATURES)
    rows.add_argument("--repeat", type=int, default=3)
    rows.add_argument("--no-forced", action="store_true",
                      help="skip the materializer forced onto the other path")
    peers = sub.add_parser("peers", help="the same join in polars and DuckDB, side by side")
    peers.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    peers.add_argument("--shape", choices=SHAPES, nargs="+", default=list(SHAPES))
    peers.add_argument("--features", type=int, default=generate.N_FEATURES)
    peers.add_argument("--repeat", type=int, default=3)
    peers.add_argument("--format", choices=("parquet", "csv", "jsonl"), nargs="+",
                       default=["parquet"], help="the feature table's format")
    scored = sub.add_parser("scores", help="the second-opinion join in polars and DuckDB")
    scored.add_argument("--rows", type=int, default=1_000_000)
    scored.add_argument("--score-rows", type=int, default=500_000)
    scored.add_argument("--features", type=int, default=generate.N_FEATURES)
    scored.add_argument("--repeat", type=int, default=3)
    many = sub.add_parser("manifests", help="plan, run and rerun manifests of small tables")
    many.add_argument("--tables", type=int, nargs="+", default=[10, 100, 1000])
    many.add_argument("--rows", type=int, default=1000, help="rows per table")
    many.add_argument("--report-plots", choices=PLOTS, default="auto",
                      help="report_plots in the manifest (auto: leave it out)")
    many.add_argument("--format", choices=("yaml", "json"), default="yaml",
                      help="manifest file format")
    args = parser.parse_args()
    info = machine()
    print(f"{info['cpu']}, {info['nproc']} cores, {info['ram_gib']} GiB, load "
          f"{' '.join(info['loadavg_at_start'])}", flush=True)
    if args.what == "rows":
        for count in args.rows:
            forced = not args.no_forced and count <= 10_000_000
            save(f"rows-{count}", {"machine": info,
                                   **bench_rows(count, args.features, args.repeat, forced)})
    elif args.what == "peers":
        for fmt in args.format:
            for shape in args.shape:
                for count in args.rows:
                    name = f"peers-{shape}-{count}" + ("" if fmt == "parquet" else f"-{fmt}")
                    save(name, {"machine": info, **bench_peers(count, args.features, shape,
                                                               args.repeat, fmt)})
    elif args.what == "scores":
        save(f"scores-{args.rows}-{args.score_rows}",
             {"machine": info, **bench_scores(args.rows, args.score_rows, args.features,
                                              args.repeat)})
    else:
        for count in args.tables:
            save(variant(count, args.report_plots, args.format),
                 {"machine": info,
                  **bench_manifest(count, args.rows, args.report_plots, args.format)})


if __name__ == "__main__":
    main()
