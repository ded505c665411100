"""Plot wall time and peak memory against rows; print the README's tables.

Reads ``benchmarks/results/*.json`` (written by ``run.py``).

    python benchmarks/plot.py            # writes scaling.png and peers.png, prints markdown
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
SERIES = {"floor": ("floor (pyarrow read + write)", "tab:gray", "o"),
          "materializer": ("materialize-mos-labels", "tab:blue", "s")}


def load() -> list[dict]:
    found = [json.loads(p.read_text()) for p in (HERE / "results").glob("rows-*.json")]
    return sorted(found, key=lambda r: r["rows"])


def markdown(results: list[dict]) -> str:
    """The figures as markdown tables: one row per table size and case, one per manifest."""
    lines = ["| Rows | Path | Case | Wall s | CPU s | Peak MiB | Wall / floor | CPU / floor "
             "| Peak / floor |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        floor = result["results"]["floor"]
        path = "streaming" if result["streamed"] else "in memory"
        for case, found in result["results"].items():
            lines.append(
                f"| {result['rows']:,} | {path} | {case} | {found['wall_s']:.2f} | "
                f"{found['cpu_s']:.2f} | {found['peak_mib']:.0f} | "
                f"{found['wall_s'] / floor['wall_s']:.2f} | "
                f"{found['cpu_s'] / floor['cpu_s']:.2f} | "
                f"{found['peak_mib'] / floor['peak_mib']:.2f} |")
    manifests = sorted((json.loads(p.read_text()) for p in
                        (HERE / "results").glob("manifest-*.json")),
                       key=lambda m: (m["tables"], m.get("manifest_format", "yaml"),
                                      str(m.get("report_plots"))))
    if manifests:
        lines += ["", "| Tables | Manifest | Per-table figures | Plan s | Full run s | "
                  "One change: plan s | rerun s | No-op plan s | Rerun rewrote |",
                  "|---:|---|---|---:|---:|---:|---:|---:|---|"]
        for manifest in manifests:
            figures = {k: v["wall_s"] for k, v in manifest["results"].items()}
            rerun = manifest.get("rerun_after_one_change")
            lines.append(
                f"| {manifest['tables']:,} | {manifest.get('manifest_format', 'yaml').upper()} "
                f"| {figure_setting(manifest)} | {figures['plan']:.1f} | "
                f"{figures['full_run']:.1f} "
                f"| {figures['one_change_plan']:.1f} | {figures['one_change_rerun']:.1f} | "
                f"{figures['noop_plan']:.1f} | "
                f"{', '.join(rerun) if rerun is not None else 'not recorded'} |")
    return "\n".join(lines)


def figure_setting(manifest: dict) -> str:
    """``report_plots`` as run: left out (default: figures up to 100 tables), true, false."""
    setting = str(manifest.get("report_plots", "auto")).lower()
    if setting == "auto":
        return f"default ({'drawn' if manifest['tables'] <= 100 else 'none'})"
    return f"`report_plots: {setting}`"


PEERS = {"floor": "tab:gray", "polars": "tab:orange", "duckdb": "tab:green",
         "materializer": "tab:blue"}


def load_peers() -> list[dict]:
    found = [json.loads(p.read_text()) for p in (HERE / "results").glob("peers-*.json")]
    return sorted(found, key=lambda r: (r.get("format", "parquet"), r["shape"], r["rows"]))


def peers_markdown(results: list[dict]) -> str:
    """One row per shape and size: each tool's wall time and peak, and the ratios to the
    faster and the smaller peer (the issue's goal is at most 1.00 for both)."""
    lines = ["| Features | Shape | Rows | floor s / MiB | polars s / MiB | DuckDB s / MiB | "
             "materializer s / MiB | wall / faster peer | peak / smaller peer |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for result in results:
        cells = [f"{result['results'][c]['wall_s']:.2f} / {result['results'][c]['peak_mib']:,.0f}"
                 for c in PEERS]
        ratio = result["vs_best_peer"]
        lines.append(f"| {result.get('format', 'parquet')} | {result['shape']} | "
                     f"{result['rows']:,} | {' | '.join(cells)} | "
                     f"{ratio['wall']:.2f} | {ratio['peak']:.2f} |")
    return "\n".join(lines)


def plot_peers(results: list[dict]) -> None:
    """Wall time and peak memory against rows, per shape, for the four tools (parquet
    feature tables; the CSV and JSON-lines rows are one size, in the table only)."""
    results = [r for r in results if r.get("format", "parquet") == "parquet"]
    shapes = sorted({r["shape"] for r in results})
    figure, axes = plt.subplots(2, len(shapes), figsize=(5 * len(shapes), 7), squeeze=False)
    for column, shape in enumerate(shapes):
        mine = [r for r in results if r["shape"] == shape]
        rows = [r["rows"] for r in mine]
        for name, colour in PEERS.items():
            axes[0][column].plot(rows, [r["results"][name]["wall_s"] for r in mine],
                                 marker="o", color=colour, label=name)
            axes[1][column].plot(rows, [r["results"][name]["peak_mib"] for r in mine],
                                 marker="o", color=colour, label=name)
        for row, unit in ((0, "wall seconds (median)"), (1, "peak MiB (max RSS)")):
            axis = axes[row][column]
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel(f"rows ({shape})")
            axis.set_ylabel(unit)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=8)
    stamp = results[-1]["machine"]
    figure.suptitle(f"The same MOS join: materializer, polars, DuckDB and the pyarrow floor, "
                    f"{stamp['nproc']} cores, {stamp['date'][:10]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(HERE / "peers.png", dpi=110)
    print(f"wrote {HERE / 'peers.png'}")


def main() -> None:
    peers = load_peers()
    if peers:
        print(peers_markdown(peers), end="\n\n")
        plot_peers(peers)
    results = load()
    if not results:  # peers only: keep the scaling figure of the last rows run
        return
    print(markdown(results))
    rows = [r["rows"] for r in results]
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, (label, colour, marker) in SERIES.items():
        walls = [r["results"][name]["wall_s"] for r in results]
        peaks = [r["results"][name]["peak_mib"] for r in results]
        time_axis.plot(rows, walls, marker=marker, color=colour, label=label)
        memory_axis.plot(rows, peaks, marker=marker, color=colour, label=label)
    floor_walls = [1.5 * r["results"]["floor"]["wall_s"] for r in results]
    floor_peaks = [1.5 * r["results"]["floor"]["peak_mib"] for r in results]
    time_axis.plot(rows, floor_walls, ls="--", color="tab:gray", lw=1, label="1.5 x floor")
    memory_axis.plot(rows, floor_peaks, ls="--", color="tab:gray", lw=1, label="1.5 x floor")
    memory_axis.axhline(2048, ls=":", color="tab:red", lw=1, label="2 GiB")
    for axis, title, unit in ((time_axis, "Wall time (median)", "seconds"),
                              (memory_axis, "Peak memory (max RSS)", "MiB")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("rows (30 float features, KoNViD-shaped path keys)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    stamp = results[-1]["machine"] if results else {}
    figure.suptitle(f"MOS join vs floor on {stamp.get('nproc', '?')} cores, "
                    f"{stamp.get('cpu', '')}, {stamp.get('date', '')[:10]}", fontsize=10)
    figure.tight_layout()
    figure.savefig(HERE / "scaling.png", dpi=110)
    print(f"wrote {HERE / 'scaling.png'}")


if __name__ == "__main__":
    main()
