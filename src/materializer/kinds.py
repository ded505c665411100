"""The two kinds of join, and everything that differs between them, in one table.

Manifests, rules, batch reports, plots and verify look a kind up here instead of
testing ``kind == ...``, so a third kind (or a renamed report) is one entry. Imports
only the light options module: the workflow reads this while Snakemake parses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from materializer.options import MosOptions, SecondOpinionOptions
from materializer.sources import Source

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
    description: str
    source_help: str
    """The help of the command's repeatable source flag (``--labels``/``--scores``)."""
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
    log_fields: tuple[str, ...]
    """Audit fields in a job log's last line and (the third) the batch's stderr line."""
    labelled_sources: bool
    """Sources are written ``[LABEL=]PATH`` (score files)."""
    done: Callable[[Mapping[str, Any]], str]
    """The command's last line, from the audit."""

    def source(self, value: Any) -> Source:
        """A source as written (a path, ``LABEL=PATH`` if labelled, or a mapping)."""
        return Source.parse(value, labelled=self.labelled_sources)

    def join_function(self) -> Any:
        module, function = self.join.split(":")
        return getattr(importlib.import_module(module), function)


KINDS: dict[str, Kind] = {
    MOS: Kind(
        name=MOS, section="mos_labels", schema_defs="mos", sources="labels",
        options=MosOptions, command="materialize-mos-labels",
        description="Join subjective MOS labels onto an extracted feature table.",
        source_help="label table (repeatable, read in order)",
        join="materializer.mos:materialize_mos_labels",
        report_schema="mos-label-materializer-batch-v1", title="MOS labels",
        markdown_title="# MOS Label Materializer Batch Report",
        stderr_prefix="MOS-label batch materialize",
        summary_fields=("input_rows", "output_rows", "matched_rows", "missing_rows"),
        table_summary_fields=("input_rows", "output_rows", "matched_rows", "missing_rows",
                              "match_rate", "labels_loaded"),
        log_fields=("input_rows", "matched_rows", "missing_rows", "match_rate"),
        labelled_sources=False,
        done=lambda a: (f"{a['matched_rows']}/{a['input_rows']} rows labelled, match rate "
                        f"{a['match_rate']:.3f}, wrote {a['output']}"),
    ),
    SECOND_OPINION: Kind(
        name=SECOND_OPINION, section="second_opinion", schema_defs="second_opinion",
        sources="scores", options=SecondOpinionOptions,
        command="materialize-second-opinion-features",
        description="Join external no-reference scorer outputs onto a feature table.",
        source_help="score sidecar (repeatable); LABEL is the fallback competitor",
        join="materializer.second_opinion:materialize_second_opinion",
        report_schema="second-opinion-materializer-batch-v1", title="Second opinion",
        markdown_title="# Second-Opinion Materializer Batch Report",
        stderr_prefix="second-opinion batch materialize",
        summary_fields=("input_rows", "output_rows"),
        table_summary_fields=("input_rows", "output_rows", "competitors"),
        log_fields=("input_rows", "output_rows"),
        labelled_sources=True,
        done=lambda a: (f"{len(a['competitors'])} competitor(s), {a['output_rows']}/"
                        f"{a['input_rows']} rows, wrote {a['output']}"),
    ),
}
BY_REPORT_SCHEMA = {kind.report_schema: kind for kind in KINDS.values()}
