"""Where the workflow's report files go, and which of them a run or a report asks for.

Used while Snakemake parses the workflow (``workflow/rules/plots.smk``), so it imports
nothing heavy; the figures themselves are drawn by :mod:`materializer.plots`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from materializer.manifest import MOS


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
        """What one table's plot job writes (second opinion: a folder of scatters).

        Each table has a folder of its own (ids hold no ``/``), so no two ids, such as
        ``a`` and ``a.mos``, can name one file; the file names keep the id for the report.
        """
        base = os.path.join(self.folder, kind, table_id, table_id)
        if kind == MOS:
            return {"histogram": f"{base}.mos.png", "caption": f"{base}.mos.html",
                    "notes": f"{base}.html"}
        return {"scatters": os.path.join(self.folder, kind, table_id, "scatters"),
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


def report_targets(layout: PlotLayout, tables: Sequence[PlottedTable],
                   batch_reports: Sequence[str], *, reporting: bool, has_mos: bool,
                   log: Any = None) -> list[str]:
    """Every file the report shows; in report mode (no job runs) only what exists.

    A failed table has no output and so no plots; asking for them would stop
    ``snakemake --report`` ("marked for report but does not exist"). After a failed run
    the summary is rebuilt from the batch reports here, as the summary job could not run.
    """
    if not reporting:
        targets = layout.summary_files(has_mos)
        for table in tables:
            targets += list(layout.table_files(table.kind, table.id).values())
        return targets
    targets = []
    if all(os.path.exists(p) for p in batch_reports):
        if stale(layout.summary_files(has_mos), batch_reports):
            from materializer.plots import batch_summary

            batch_summary(batch_reports, layout.summary,
                          *(layout.chart.values() if has_mos else ()))
        targets += layout.summary_files(has_mos)
    for table in tables:
        files = list(layout.table_files(table.kind, table.id).values())
        if all(os.path.exists(p) for p in (table.out, table.audit, *files)):
            targets += files
        elif log is not None:
            print(f"report: no plots for table {table.id!r} (not run, failed, or not "
                  "plotted yet: run snakemake first)", file=log)
    return targets
