"""Figures and HTML fragments for the workflow's Snakemake report (``snakemake --report``).

Everything here reads what the batch already wrote (joined tables, audits, batch-v1
reports) and writes small files the report embeds: PNG figures, HTML fragments used as
captions, per-table notes, and the status summary shown on the report's front page.
Figures use matplotlib's object API (no pyplot state), so each call is self-contained.
Agreement figures (correlations, the logistic fit) are read from the audits' ``agreement``
blocks, computed once at join time with scipy: nothing is recomputed here.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from materializer import files, paths, tableio
from materializer.agreement import logistic
from materializer.kinds import BY_REPORT_SCHEMA, KINDS, MOS, SECOND_OPINION

FIGURE_SIZE = (6.4, 4.0)
DPI = 100
OK_COLOUR = "#3b75af"
LOW_COLOUR = "#c0392b"
PNG_METADATA = {"Software": None}  # no matplotlib version: same inputs, same bytes

MOS_COLUMN = "mos"

# --- agreement ---------------------------------------------------------------------


def ok_pairs(frame: pd.DataFrame, score: str, status: str, mos: str) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """The rows the agreement audit used: status ok, a finite score and a finite MOS."""
    x = pd.to_numeric(frame[score], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    y = pd.to_numeric(frame[mos], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    keep = (frame[status].astype(str) == "ok").to_numpy() & np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


# --- reading ------------------------------------------------------------------------


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_columns(path: str | os.PathLike[str], wanted: Iterable[str]) -> pd.DataFrame:
    """The wanted columns that the table has (parquet reads only those)."""
    written = os.fspath(path)
    wanted = list(dict.fromkeys(wanted))
    present = set(tableio.read_columns(Path(written), written))
    columns = [c for c in wanted if c in present]
    if files.table_format(written) == "parquet":
        return pq.read_table(written, columns=columns).to_pandas()
    return tableio.read_table(Path(written), written).select(columns).to_pandas()


# --- small HTML helpers -------------------------------------------------------------


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def rate_text(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def corr_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def interval_text(values: Sequence[float] | None) -> str:
    return "n/a" if values is None else f"[{values[0]:+.3f}, {values[1]:+.3f}]"


def number_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def keys_html(title: str, keys: Sequence[Any], total: int | None = None) -> str:
    """A short list of example keys (audits keep the first few)."""
    if not keys:
        return ""
    count = f" ({total} in all)" if total is not None else ""
    items = ", ".join(f"<code>{esc(k)}</code>" for k in keys)
    return f"<p><b>{esc(title)}</b>{esc(count)}, e.g.: {items}</p>\n"


def write_text(path: str | os.PathLike[str], text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")


def save_figure(figure: Any, path: str | os.PathLike[str]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata=PNG_METADATA)


def new_figure(fixed_margins: bool = False) -> tuple[Any, Any]:
    """A figure and its axes without pyplot (safe in threads, no global state).

    Per-table figures (a job each) use fixed margins: the layout solver would cost a
    third of their time. The summary figures, with labels of any length, keep it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE, layout=None if fixed_margins else "constrained")
    if fixed_margins:
        figure.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.86)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


# --- per-table figures --------------------------------------------------------------


def mos_histogram(table_id: str, table: str, audit_json: str, png: str, caption: str) -> None:
    """Histogram of ``mos`` for one MOS table, and its caption (missing labels)."""
    audit = read_json(audit_json)
    frame = read_columns(table, [MOS_COLUMN])
    values = pd.to_numeric(frame.get(MOS_COLUMN, pd.Series(dtype=float)),
                           errors="coerce").astype(float)
    values = values[np.isfinite(values)]
    rows = int(audit.get("output_rows") or len(frame))
    missing = int(audit.get("missing_rows") or 0)

    figure, axes = new_figure(fixed_margins=True)
    if len(values):
        axes.hist(values, bins=min(40, max(5, int(math.sqrt(len(values))))), color=OK_COLOUR,
                  edgecolor="white")
    else:
        axes.text(0.5, 0.5, "no labels", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel(MOS_COLUMN)
    axes.set_ylabel("rows")
    axes.set_title(f"{table_id}: {len(values)} labelled rows, {missing} missing labels")
    save_figure(figure, png)

    stats = ""
    if len(values):
        stats = (f" Labelled values: mean {values.mean():.3f}, median {values.median():.3f}, "
                 f"range {values.min():.3f} to {values.max():.3f}.")
    write_text(caption, (
        f"<p>Table <b>{esc(table_id)}</b>: {rows} rows, {len(values)} with a label, "
        f"<b>{missing} missing labels</b>; match rate {rate_text(audit.get('match_rate'))} "
        f"(minimum {rate_text(audit.get('min_match_rate'))}).{esc(stats)}</p>\n"))


def competitor_scatters(table_id: str, table: str, audit_json: str, folder: str) -> list[str]:
    """Per competitor, MOS against its score with the fitted VQEG logistic, when the audit
    has an agreement block (the table has a MOS column).

    Writes ``<competitor>.png`` and its caption ``<competitor>.html`` into ``folder``
    (created even when empty); returns the competitors plotted.
    """
    audit = read_json(audit_json)
    Path(folder).mkdir(parents=True, exist_ok=True)
    agreement = audit.get("agreement")
    if not agreement:
        return []
    mos = agreement["mos_column"]
    prefixes = {name: (audit.get("competitors") or {}).get(name, {}).get("column_prefix")
                for name in agreement["competitors"]}
    frame = read_columns(table, [mos, *(f"{p}_{s}" for p in prefixes.values()
                                        for s in ("score", "status"))])
    plotted = []
    for name, figures in agreement["competitors"].items():
        score, status = f"{prefixes[name]}_score", f"{prefixes[name]}_status"
        if not {mos, score, status} <= set(frame.columns):
            continue
        x, y = ok_pairs(frame, score, status, mos)
        figure, axes = new_figure(fixed_margins=True)
        axes.scatter(x, y, s=8, alpha=0.5, color=OK_COLOUR, linewidths=0)
        if figures.get("logistic_params") and len(x):
            curve = np.linspace(x.min(), x.max(), 200)
            axes.plot(curve, logistic(curve, *figures["logistic_params"]), color=LOW_COLOUR,
                      linewidth=1.5, label="VQEG logistic fit")
            axes.legend(loc="best", fontsize=8)
        axes.set_xlabel(score)
        axes.set_ylabel(mos)
        axes.set_title(f"{table_id} / {name}\nSRCC {corr_text(figures.get('srcc'))}, PLCC "
                       f"after the fit {corr_text(figures.get('plcc_logistic'))}, "
                       f"n={figures.get('n')}")
        save_figure(figure, Path(folder) / f"{name}.png")
        write_text(Path(folder) / f"{name}.html", _scatter_caption(table_id, name, mos,
                                                                   figures))
        plotted.append(name)
    return plotted


def _scatter_caption(table_id: str, name: str, mos: str, f: Mapping[str, Any]) -> str:
    fit = (f"after the VQEG logistic fit (red curve): <b>Pearson r = "
           f"{corr_text(f.get('plcc_logistic'))}</b> (95% CI "
           f"{interval_text(f.get('plcc_logistic_ci95'))}), RMSE "
           f"{number_text(f.get('rmse_logistic'))} MOS units"
           if f.get("logistic_converged") else "no logistic fit")
    note = f" Note: {esc(f['note'])}." if f.get("note") else ""
    return (f"<p>Table <b>{esc(table_id)}</b>, competitor <b>{esc(name)}</b> against "
            f"<code>{esc(mos)}</code>, over {f.get('n')} rows with status ok and a MOS (bad "
            f"and missing rows left out): <b>Spearman &rho; = {corr_text(f.get('srcc'))}</b> "
            f"(95% CI {interval_text(f.get('srcc_ci95'))}), Kendall &tau;<sub>b</sub> = "
            f"{corr_text(f.get('krcc'))}, Pearson r = {corr_text(f.get('plcc'))}; "
            f"{fit}.{note}</p>\n")


AGREEMENT_HEADER = ("<thead><tr><th>Table</th><th>Competitor</th><th>n</th><th>SRCC</th>"
                    "<th>SRCC 95% CI</th><th>KRCC</th><th>PLCC</th><th>PLCC (logistic)</th>"
                    "<th>PLCC (logistic) 95% CI</th><th>RMSE (logistic)</th><th>Note</th>"
                    "</tr></thead>")


def agreement_rows_html(blocks: Sequence[tuple[str, Mapping[str, Any]]], element_id: str) \
        -> str:
    """One row per table and competitor of the given agreement blocks."""
    rows = []
    for table_id, block in blocks:
        for name, f in block["competitors"].items():
            cells = [f["n"], corr_text(f["srcc"]), interval_text(f["srcc_ci95"]),
                     corr_text(f["krcc"]), corr_text(f["plcc"]), corr_text(f["plcc_logistic"]),
                     interval_text(f["plcc_logistic_ci95"]), number_text(f["rmse_logistic"])]
            rows.append(f"<tr><td>{esc(table_id)}</td><td><b>{esc(name)}</b></td>"
                        + "".join(f'<td class="num">{esc(c)}</td>' for c in cells)
                        + f"<td>{esc(f['note'] or '')}</td></tr>")
    return (f'<table class="vq-status vq-agreement" id="{esc(element_id)}">{AGREEMENT_HEADER}'
            "<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n")


def agreement_table(table_id: str, audit_json: str, html_out: str) -> None:
    """The table's agreement block as an HTML table: one row per competitor, then what
    combining the competitors gains over the best one alone."""
    agreement = read_json(audit_json).get("agreement")
    parts = [STYLE, f"<h3>{esc(table_id)}: agreement with MOS</h3>\n"]
    if not agreement:
        parts.append("<p>The table has no MOS column: no agreement figures.</p>\n")
        write_text(html_out, "".join(parts))
        return
    parts.append(f"<p>MOS column <code>{esc(agreement['mos_column'])}</code>, "
                 f"{agreement['rows_with_mos']} rows with a MOS.</p>\n")
    parts.append(agreement_rows_html([(table_id, agreement)], f"vq-agreement-{table_id}"))
    i = agreement["intersection"]
    parts.append(
        f'<p class="vq-intersection">On the {i["intersection_rows"]} rows where every '
        f"competitor is ok: best single competitor <b>{esc(i['best_single'] or 'n/a')}</b> "
        f"(5-fold cv SRCC {corr_text(i['best_single_cv_srcc'])}), all combined (linear fit) "
        f"{corr_text(i['combined_cv_srcc'])}, <b>gain {corr_text(i['gain'])}</b>."
        + (f" Note: {esc(i['note'])}." if i["note"] else "") + "</p>\n")
    write_text(html_out, "".join(parts))


def pairwise_heatmap(table_id: str, audit_json: str, folder: str) -> bool:
    """Spearman between every pair of competitors on the intersection rows, as a heatmap
    (``pairwise-srcc.png`` and its caption in ``folder``); only with two or more."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    agreement = read_json(audit_json).get("agreement")
    pairs = (agreement or {}).get("intersection", {}).get("pairwise_srcc") or {}
    names = list(pairs)
    if len(names) < 2:
        return False
    matrix = np.array([[1.0 if a == b else _nan(pairs[a].get(b)) for b in names]
                       for a in names])
    figure, axes = new_figure()
    image = axes.imshow(np.ma.masked_invalid(matrix), cmap="RdBu_r", vmin=-1, vmax=1)
    figure.colorbar(image, ax=axes, label="Spearman rho")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_yticks(range(len(names)), names)
    if len(names) <= 12:
        for (row, column), value in np.ndenumerate(matrix):
            axes.text(column, row, "n/a" if np.isnan(value) else f"{value:+.2f}",
                      ha="center", va="center", fontsize=8,
                      color="white" if abs(value) > 0.6 else "black")
    rows = agreement["intersection"]["intersection_rows"]
    axes.set_title(f"{table_id}: Spearman between competitors ({rows} rows)")
    save_figure(figure, Path(folder) / "pairwise-srcc.png")
    write_text(Path(folder) / "pairwise-srcc.html", (
        f"<p>Table <b>{esc(table_id)}</b>: Spearman &rho; between each pair of its "
        f"{len(names)} competitors over the {rows} rows where every one is ok and has a "
        f"MOS. Gain from combining them: {corr_text(agreement['intersection']['gain'])} "
        f"(see the table's agreement table).</p>\n"))
    return True


def _nan(value: float | None) -> float:
    return np.nan if value is None else float(value)


def table_notes(kind: str, table_id: str, audit_json: str, notes: str, remark: str = "") \
        -> None:
    """Coverage of one table, with a few unmatched keys from each side when not full."""
    audit = read_json(audit_json)
    parts = [f"<h3>{esc(table_id)} ({esc(KINDS[kind].title)})</h3>\n"]
    if remark:
        parts.append(f"<p>{esc(remark)}</p>\n")
    if kind == MOS:
        total = int(audit.get("total_feature_keys") or 0)
        unmatched_features = total - int(audit.get("matched_feature_keys") or 0)
        parts.append(
            f"<p>{audit.get('input_rows')} feature rows, {audit.get('matched_rows')} with a "
            f"label, {audit.get('missing_rows')} missing; match rate "
            f"{rate_text(audit.get('match_rate'))} (minimum "
            f"{rate_text(audit.get('min_match_rate'))}); {audit.get('labels_loaded')} labels "
            f"loaded.</p>\n")
        if float(audit.get("match_rate") or 0.0) < 1.0 or audit.get("unmatched_label_keys"):
            parts.append(keys_html("Feature keys without a label",
                                   audit.get("unmatched_feature_keys") or [],
                                   unmatched_features))
            parts.append(keys_html("Label keys without a feature row",
                                   audit.get("unmatched_label_keys") or []))
        else:
            parts.append("<p>Full coverage: every feature key has a label.</p>\n")
    else:
        rows = int(audit.get("output_rows") or 0)
        parts.append(f"<p>{audit.get('input_rows')} feature rows, {rows} written.</p>\n")
        for name, info in (audit.get("competitors") or {}).items():
            matched = int(info.get("matched_rows") or 0)
            coverage = matched / rows if rows else None
            parts.append(
                f"<p>Competitor <b>{esc(name)}</b>: rows with a score {matched} "
                f"(coverage {rate_text(coverage)}), {info.get('missing_rows')} without, "
                f"{info.get('unmatched_scores')} of {info.get('scores_loaded')} scores "
                f"matched no row.</p>\n")
            if info.get("missing_rows") or info.get("unmatched_score_keys"):
                parts.append(keys_html(f"{name}: score keys without a feature row",
                                       info.get("unmatched_score_keys") or [],
                                       int(info.get("unmatched_scores") or 0)))
    write_text(notes, "".join(parts))


# --- batch summary ------------------------------------------------------------------


def report_kind(report: Mapping[str, Any]) -> str:
    kind = BY_REPORT_SCHEMA.get(str(report.get("schema")))
    return kind.name if kind is not None else MOS


def _audit_of(report: Mapping[str, Any], table: Mapping[str, Any]) -> dict[str, Any]:
    """The table's audit when it can still be read (only for the threshold)."""
    base = (report.get("run_provenance") or {}).get("base_dir") or "."
    try:
        return read_json(paths.resolve(base, str(table.get("audit_json"))))
    except (OSError, ValueError):
        return {}


def status_rows(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per table of every report: status, rows, match rate, output, error."""
    rows = []
    for report in reports:
        kind = report_kind(report)
        for table in report.get("tables") or []:
            summary = table.get("summary") or {}
            rates = {}
            if kind == MOS:
                rates[""] = summary.get("match_rate")
            else:
                out_rows = int(summary.get("output_rows") or 0)
                for name, info in (summary.get("competitors") or {}).items():
                    matched = int((info or {}).get("matched_rows") or 0)
                    rates[name] = matched / out_rows if out_rows else None
            rows.append({
                "kind": kind,
                "id": table.get("id"),
                "status": table.get("status"),
                "input_rows": summary.get("input_rows"),
                "output_rows": summary.get("output_rows"),
                "rates": rates,
                "out": table.get("out"),
                "error": table.get("error"),
            })
    return rows


def _rates_html(rates: Mapping[str, Any]) -> str:
    if not rates:
        return "-"
    return "<br>".join((f"{esc(name)} " if name else "") + rate_text(value)
                       for name, value in rates.items())


STYLE = """<style>
.prose { max-width: none !important; }
table.vq-status { border-collapse: collapse; font-size: 0.8rem; margin: 0.5rem 0 1rem; }
table.vq-status th, table.vq-status td { border: 1px solid #ccc; padding: 2px 6px;
  text-align: left; vertical-align: top; }
table.vq-status td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.vq-status tr.error td { background: #fdecea; }
table.vq-status code { font-size: 0.75rem; }
.vq-summary code::before, .vq-summary code::after { content: none; }
</style>
"""


def status_table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table of every table: status, rows, match rate (coverage per competitor)."""
    lines = ['<table class="vq-status" id="vq-status">',
             "<thead><tr><th>Table</th><th>Kind</th><th>Status</th><th>Input rows</th>"
             "<th>Output rows</th><th>Match rate</th><th>Output</th></tr></thead>", "<tbody>"]
    for row in rows:
        failed = row["status"] != "ok"
        status = esc(row["status"])
        if failed:
            status += f"<br><small>{esc(row['error'])}</small>"
        lines.append(
            f'<tr class="{"error" if failed else "ok"}"><td><b>{esc(row["id"])}</b></td>'
            f"<td>{esc(KINDS[row['kind']].title)}</td><td>{status}</td>"
            f'<td class="num">{esc(_dash(row["input_rows"]))}</td>'
            f'<td class="num">{esc(_dash(row["output_rows"]))}</td>'
            f'<td class="num">{_rates_html(row["rates"]) if not failed else "-"}</td>'
            f"<td><code>{esc(row['out'])}</code></td></tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines) + "\n"


def _dash(value: Any) -> Any:
    return "-" if value is None else value


def provenance_html(report: Mapping[str, Any]) -> str:
    """Manifest, versions, commit and input hashes of one batch report."""
    prov = report.get("run_provenance") or {}
    inputs = prov.get("inputs") or {}
    manifest = inputs.get("manifest") or {}
    versions = ", ".join(f"{esc(k)} {esc(v)}" for k, v in sorted((prov.get("versions")
                                                                   or {}).items()))
    parts = [
        f"<p><b>{esc(report.get('schema'))}</b>: status <b>{esc(report.get('status'))}</b>; "
        f"manifest <code>{esc(report.get('manifest'))}</code> (sha256 "
        f"<code>{esc(_short(manifest.get('sha256')))}</code>); commit "
        f"<code>{esc(prov.get('git_commit') or 'unknown')}</code>; finished "
        f"{esc(prov.get('finished_at') or '-')}.<br>Versions: {versions}.</p>",
        '<table class="vq-status vq-inputs"><thead><tr><th>Table</th><th>Input</th>'
        "<th>Path</th><th>sha256</th></tr></thead><tbody>",
    ]
    for table_id, roles in (inputs.get("tables") or {}).items():
        for role, described in roles.items():
            for item in described if isinstance(described, list) else [described]:
                parts.append(
                    f"<tr><td>{esc(table_id)}</td><td>{esc(role)}</td>"
                    f"<td><code>{esc(item.get('path'))}</code></td>"
                    f"<td><code>{esc(_short(item.get('sha256')))}</code></td></tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts) + "\n"


def _short(digest: Any) -> str:
    return "-" if not digest else str(digest)[:16]


def summary_html(reports: Sequence[Mapping[str, Any]]) -> str:
    """The report's front page block: status of every table, then provenance."""
    rows = status_rows(reports)
    failed = sum(1 for row in rows if row["status"] != "ok")
    verdict = "all ok" if not failed else f"{failed} of {len(rows)} failed"
    parts = [STYLE, f'<div class="vq-summary"><p><b>{len(rows)} tables, {verdict}.</b></p>\n',
             status_table_html(rows)]
    blocks = [(str(t.get("id")), t["agreement"]) for report in reports
              for t in report.get("tables") or [] if t.get("agreement")]
    if blocks:
        parts += ["<h3>Agreement with MOS</h3>\n<p>Each second opinion against its table's "
                  "MOS, over rows with status ok (see <b>Agreement</b> for each table's gain "
                  "from combining scorers).</p>\n",
                  agreement_rows_html(blocks, "vq-agreement")]
    parts.append("<h3>Provenance</h3>\n")
    parts += [provenance_html(report) for report in reports]
    parts.append("</div>\n")
    return "".join(parts)


BARS_UP_TO = 40
"""Up to this many MOS tables the match-rate chart has a labelled bar per table."""


def match_rate_chart(reports: Sequence[Mapping[str, Any]], png: str, caption: str) -> None:
    """Each MOS table's match rate against its minimum (``min_match_rate``), and a caption.

    Up to 40 tables: a labelled bar per table. More: the rates sorted, lowest first, with
    the tables below their minimum in red (names in the caption).
    """
    bars = []
    for report in reports:
        if report_kind(report) != MOS:
            continue
        for table in report.get("tables") or []:
            summary = table.get("summary") or {}
            config = table.get("config") or {}
            minimum = config.get("min_match_rate", _audit_of(report, table).get("min_match_rate"))
            bars.append((str(table.get("id")), table.get("status") == "ok",
                         summary.get("match_rate"), minimum))
    rates = [float(rate or 0.0) if ok else 0.0 for _, ok, rate, _ in bars]
    low = [not ok or (m is not None and rate < float(m))
           for (_, ok, _, m), rate in zip(bars, rates, strict=True)]
    figure, axes = new_figure()
    if len(bars) <= BARS_UP_TO:
        _rate_bars(axes, bars, rates, low)
    else:
        _sorted_rates(axes, bars, rates, low)
    axes.set_ylim(0, 1.1)
    axes.set_ylabel("match rate")
    save_figure(figure, png)

    scored = [(name, rate) for (name, ok, _, _), rate in zip(bars, rates, strict=True) if ok]
    lowest = min(scored, key=lambda item: item[1]) if scored else None
    below = [name for (name, ok, _, m), rate in zip(bars, rates, strict=True)
             if ok and m is not None and rate < float(m)]
    failed = [name for name, ok, *_ in bars if not ok]
    text = f"<p>{len(bars)} MOS tables."
    if lowest:
        text += f" Lowest match rate: <b>{esc(lowest[0])}</b> ({lowest[1]:.3f})."
    if below:
        text += f" Below their minimum ({len(below)}): {esc(_some(below))}."
    if failed:
        text += f" Failed, drawn as 0 ({len(failed)}): {esc(_some(failed))}."
    write_text(caption, text + "</p>\n")


def _rate_bars(axes: Any, bars: Sequence[tuple[str, bool, Any, Any]], rates: list[float],
               low: list[bool]) -> None:
    """A labelled bar per table, its value on top and its minimum dashed."""
    positions = np.arange(len(bars))
    axes.bar(positions, rates, color=[LOW_COLOUR if x else OK_COLOUR for x in low])
    for x, (_, ok, _, minimum), rate in zip(positions, bars, rates, strict=True):
        if minimum is not None:
            axes.hlines(float(minimum), x - 0.4, x + 0.4, colors="black", linestyles="dashed",
                        label="minimum" if x == 0 else None)
        axes.text(x, max(rate, 0.02), f"{rate:.3f}" if ok else "failed", ha="center",
                  va="bottom", fontsize=8)
    axes.set_xticks(positions, [name for name, *_ in bars], rotation=30 if len(bars) > 4 else 0,
                    ha="right" if len(bars) > 4 else "center")
    axes.set_title("Match rate per MOS table (dashed: minimum)")


def _sorted_rates(axes: Any, bars: Sequence[tuple[str, bool, Any, Any]], rates: list[float],
                  low: list[bool]) -> None:
    """Too many tables to name: every rate as a point, lowest first; minimums dashed."""
    order = np.argsort(np.asarray(rates), kind="stable")
    positions = np.arange(1, len(bars) + 1)
    sorted_rates = np.asarray(rates)[order]
    sorted_low = np.asarray(low)[order]
    axes.scatter(positions[~sorted_low], sorted_rates[~sorted_low], s=6, color=OK_COLOUR,
                 linewidths=0)
    axes.scatter(positions[sorted_low], sorted_rates[sorted_low], s=16, color=LOW_COLOUR,
                 linewidths=0)
    minimums = np.array([np.nan if m is None else float(m) for *_, m in bars])[order]
    if np.isfinite(minimums).any():
        axes.plot(positions, minimums, color="black", linestyle="dashed", linewidth=1)
    axes.set_xlabel("tables, lowest match rate first")
    axes.set_title(f"Match rate of {len(bars)} MOS tables "
                   f"({int(sorted_low.sum())} low or failed; dashed: minimum)")


def _some(names: Sequence[str], shown: int = 20) -> str:
    """The first names of a long list, and how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def batch_summary(report_jsons: Sequence[str], html_out: str, chart: str | None = None,
                  chart_caption: str | None = None) -> None:
    """Front-page summary (and the match-rate chart) from the batch-v1 JSON reports."""
    reports = [read_json(path) for path in report_jsons]
    write_text(html_out, summary_html(reports))
    if chart is not None and chart_caption is not None:
        match_rate_chart(reports, chart, chart_caption)


def mos_plots(table_id: str, input: Any, output: Any, log: str) -> None:
    """Body of a per-table MOS plot job: histogram, its caption, and coverage notes."""
    mos_histogram(table_id, input.table, input.audit, output.histogram, output.caption)
    table_notes(MOS, table_id, input.audit, output.notes)
    write_text(log, f"plotted {output.histogram}\n")


def second_opinion_plots(table_id: str, input: Any, output: Any, log: str) -> None:
    """Body of a per-table second-opinion plot job: a scatter per competitor, the
    agreement table, the competitor heatmap, and coverage notes."""
    plotted = competitor_scatters(table_id, input.table, input.audit, output.scatters)
    agreement_table(table_id, input.audit, output.agreement)
    heatmap = pairwise_heatmap(table_id, input.audit, output.pairwise)
    remark = "" if plotted else "The table has no MOS column: no scatter of MOS against score."
    table_notes(SECOND_OPINION, table_id, input.audit, output.notes, remark)
    write_text(log, f"scatters: {', '.join(plotted) or 'none'}; pairwise heatmap: "
               f"{'yes' if heatmap else 'no'}. {remark}\n")
