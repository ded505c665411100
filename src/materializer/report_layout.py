"""Where the workflow's report files go, and which of them a run or a report asks for.

Used while Snakemake parses the workflow (``workflow/rules/plots.smk``), so it imports
nothing heavy; the figures themselves are drawn by :mod:`materializer.plots`, imported
only by what draws them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from materializer.kinds import MOS
from materializer.manifest import Manifest


def stale(outputs: Sequence[str], inputs: Sequence[str]) -> bool:
    """Is any output missing or older than an input (all inputs existing)?"""
    if not all(os.path.exists(p) for p in inputs):
        return False
    if not all(os.path.exists(p) for p in outputs):
        return True
    return min(os.path.getmtime(p) for p in outputs) < max(os.path.getmtime(p) for p in inputs)


@dataclass(frozen=True)
class PlotLayout:
    """The report's files, all under one folder (the batch reports' ``plots/``)."""

    folder: str

    def table_files(self, kind: str, table_id: str) -> dict[str, str]:
        """What one table's plot job writes (second opinion: a folder of scatters, the
        agreement table, and a folder holding the competitor heatmap when there are two).

        Each table has a folder of its own (ids hold no ``/``), so no two ids, such as
        ``a`` and ``a.mos``, can name one file; the file names keep the id for the report.
        """
        base = os.path.join(self.folder, kind, table_id, table_id)
        if kind == MOS:
            return {"histogram": f"{base}.mos.png", "caption": f"{base}.mos.html",
                    "notes": f"{base}.html"}
        return {"scatters": os.path.join(self.folder, kind, table_id, "scatters"),
                "agreement": f"{base}.agreement.html",
                "pairwise": os.path.join(self.folder, kind, table_id, "pairwise"),
                "notes": f"{base}.html"}

    @property
    def summary(self) -> str:
        return os.path.join(self.folder, "summary.html")

    @property
    def chart(self) -> dict[str, str]:
        return {"chart": os.path.join(self.folder, "match-rate.png"),
                "caption": os.path.join(self.folder, "match-rate.html")}

    def summary_files(self, has_mos: bool) -> list[str]:
        return [self.summary, *(self.chart.values() if has_mos else ())]


@dataclass(frozen=True)
class PlottedTable:
    """A manifest table as the report sees it: paths as Snakemake tracks them."""

    kind: str
    id: str
    out: str
    audit: str


@dataclass(frozen=True)
class ReportFiles:
    """Everything ``snakemake --report`` shows, and which of it a command asks for.

    ``tables`` are the tables that get figures (``report_plots``, or up to 100 tables);
    ``note`` says why there are none when the manifest did not ask.
    """

    layout: PlotLayout
    tables: tuple[PlottedTable, ...]
    batch_reports: tuple[str, ...]
    has_mos: bool
    note: str | None = None

    @classmethod
    def for_manifest(cls, manifest: Manifest, tracked: Callable[[str], str],
                     batch_reports: Sequence[str]) -> ReportFiles:
        """Figures go under ``plots/`` beside the first batch report; ``tracked`` turns a
        manifest path as written into the one Snakemake tracks, ``batch_reports`` are the
        sections' JSON reports as Snakemake tracks them."""
        reports = tuple(batch_reports)
        folder = os.path.join(os.path.dirname(reports[0]), "plots") if reports else "plots"
        plotted = manifest.tables if manifest.report_plots else []
        note = None
        if manifest.report_plots_requested is None and not plotted:
            note = (f"report: {len(manifest.tables)} tables, so no per-table figures"
                    " (`report_plots: true` in the manifest draws them)")
        return cls(
            layout=PlotLayout(folder),
            tables=tuple(PlottedTable(t.kind, t.id, tracked(t.out), tracked(t.audit_json))
                         for t in plotted),
            batch_reports=reports,
            has_mos=any(s.kind == MOS for s in manifest.sections),
            note=note,
        )

    def of_kind(self, kind: str) -> list[PlottedTable]:
        return [t for t in self.tables if t.kind == kind]

    def summary_files(self) -> list[str]:
        return self.layout.summary_files(self.has_mos)

    def targets(self, *, jobs_run: bool, log: Any = None) -> list[str]:
        """Every file the report shows; when no job runs (``snakemake --report``), only
        those that exist and are current, as a report job cannot make any.

        A failed table has no output and so no plots; asking for them would stop
        ``snakemake --report`` ("marked for report but does not exist"). After a failed
        run the summary is the one the failure handler drew (:meth:`draw_summary`).
        """
        if jobs_run:
            targets = self.summary_files()
            for table in self.tables:
                targets += list(self.layout.table_files(table.kind, table.id).values())
            return targets
        targets = []
        if all(os.path.exists(p) for p in self.batch_reports):
            if not stale(self.summary_files(), self.batch_reports):
                targets += self.summary_files()
            elif log is not None:
                print("report: no summary (missing or older than the batch reports: run "
                      "snakemake first)", file=log)
        for table in self.tables:
            files = list(self.layout.table_files(table.kind, table.id).values())
            if all(os.path.exists(p) for p in (table.out, table.audit, *files)):
                targets += files
            elif log is not None:
                print(f"report: no plots for table {table.id!r} (not run, failed, or not "
                      "plotted yet: run snakemake first)", file=log)
        return targets

    def draw_summary(self) -> None:
        """Draw the summary (and the match-rate chart) from the batch reports, as the
        summary jobs do; used after a failed run, when they could not run."""
        from materializer.plots import batch_summary

        batch_summary(list(self.batch_reports), self.layout.summary,
                      *(self.layout.chart.values() if self.has_mos else ()))

