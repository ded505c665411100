"""The two kinds of join, and everything that differs between them, in one table.

Manifests, rules, batch reports, plots and verify look a kind up here instead of
testing ``kind == ...``, so a third kind (or a renamed report) is one entry. Imports
only the light options module: the workflow reads this while Snakemake parses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from materializer.options import MosOptions, SecondOpinionOptions

MOS = "mos-labels"
SECOND_OPINION = "second-opinion"


@dataclass(frozen=True)
class Kind:
    """One kind of join: its names, options, sources, reports and join function."""

    name: str
    """The manifest's ``kind`` value, and the folder of its logs and figures."""
    section: str
    """The combined manifest's section key (also the default report file stem)."""
    schema_defs: str
    """The prefix of its ``$defs`` in the manifest schema."""
    sources: str
    """The table field listing its label or score files."""
    options: type[Any]
    command: str
    """The single-table command."""
    join: str
    """``module:function`` of the library join (imported when a job runs)."""
    report_schema: str
    title: str
    """How reports and figures name the kind."""
    markdown_title: str
    stderr_prefix: str
    summary_fields: tuple[str, ...]
    """Audit fields summed over a batch."""
    table_summary_fields: tuple[str, ...]
    """Audit fields copied into each table's report entry."""

    def join_function(self) -> Any:
        module, function = self.join.split(":")
        return getattr(importlib.import_module(module), function)


KINDS: dict[str, Kind] = {
    MOS: Kind(
        name=MOS, section="mos_labels", schema_defs="mos", sources="labels",
        options=MosOptions, command="materialize-mos-labels",
        join="materializer.mos:materialize_mos_labels",
        report_schema="mos-label-materializer-batch-v1", title="MOS labels",
        markdown_title="# MOS Label Materializer Batch Report",
        stderr_prefix="MOS-label batch materialize",
        summary_fields=("input_rows", "output_rows", "matched_rows", "missing_rows"),
        table_summary_fields=("input_rows", "output_rows", "matched_rows", "missing_rows",
                              "match_rate", "labels_loaded"),
    ),
    SECOND_OPINION: Kind(
        name=SECOND_OPINION, section="second_opinion", schema_defs="second_opinion",
        sources="scores", options=SecondOpinionOptions,
        command="materialize-second-opinion-features",
        join="materializer.second_opinion:materialize_second_opinion",
        report_schema="second-opinion-materializer-batch-v1", title="Second opinion",
        markdown_title="# Second-Opinion Materializer Batch Report",
        stderr_prefix="second-opinion batch materialize",
        summary_fields=("input_rows", "output_rows"),
        table_summary_fields=("input_rows", "output_rows", "competitors"),
    ),
}
BY_REPORT_SCHEMA = {kind.report_schema: kind for kind in KINDS.values()}
