"""A batch run as the Snakemake workflow drives it: the manifest it loaded, what its rules
ask for, and the bodies of its jobs and of its failure handler.

The rule files (``workflow/rules/*.smk``) look up only what Snakemake alone knows (the
``--configfile``, the executor plugin, the targets, its metadata store) and call this
module, which never imports snakemake. Paths handed to Snakemake are the ones it tracks
(:meth:`BatchRun.tracked`): relative to the working directory when under it, else
absolute.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from materializer import batch, jobs, report_layout
from materializer.errors import UsageError
from materializer.manifest import Manifest, Section, Table, load_manifest

VERIFY_TARGET = "verify"
"""The rule that checks the reports: its failure must not rewrite them."""


def shown(path: str | os.PathLike[str]) -> str:
    """A path relative to the working directory when it lies under it, else absolute."""
    path = os.path.abspath(path)
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def one_manifest(loaded: Sequence[str]) -> str:
    """The one config file the run loaded is the manifest. Several are refused (Snakemake
    merges them, so two manifests would silently become one); none means a module was
    given a config that no file holds, which leaves relative paths without a base."""
    if len(loaded) > 1:
        raise UsageError("give one manifest (--configfile, or one configfile: in a Snakefile "
                         "using the workflow as a module); got " + ", ".join(map(shown, loaded))
                         + ". Put MOS and second-opinion tables into one combined manifest.")
    if not loaded:
        raise UsageError("no manifest file: give --configfile MANIFEST, or configfile: "
                         "MANIFEST in the Snakefile using the workflow as a module")
    return shown(loaded[0])


def executor_name(plugin: str | None) -> str | None:
    """What the provenance records as the executor: the plugin's name (``local`` without
    one); None inside a SLURM job, where the provenance says ``slurm`` and the job id."""
    if os.environ.get("SLURM_JOB_ID"):
        return None
    return plugin or "local"


def rule_name(table: Any) -> str:
    """``<kind with _>__<id>``: the rule of a table (``--set-resources`` uses it)."""
    return f"{table.kind.replace('-', '_')}__{table.id}"


def log_path(table: Any) -> str:
    return f"logs/{table.kind}/{table.id}.log"


@dataclass
class BatchRun:
    """One ``snakemake`` invocation over one manifest.

    ``snakefile`` is recorded as the entrypoint of the batch reports, ``table_rules`` as
    that of each table's audit; ``argv`` is this process's command line.
    """

    manifest: Manifest
    snakefile: str
    table_rules: str
    extra_versions: Mapping[str, str] = field(default_factory=dict)
    argv: Sequence[str] = field(default_factory=lambda: [str(a) for a in sys.argv[1:]])
    status_root: str = jobs.STATUS_ROOT
    _input_bytes: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, config: Mapping[str, Any], *, manifest_path: str,
             base_dir: Any = None, **facts: Any) -> BatchRun:
        """Validate and resolve the manifest (:class:`~materializer.manifest.ManifestError`
        lists every problem); ``base_dir`` is ``--config base_dir=`` when given."""
        manifest = load_manifest(dict(config), manifest_path=manifest_path,
                                 base_dir=None if base_dir is None else str(base_dir))
        return cls(manifest, **facts)

    # --- what the rules ask for -----------------------------------------------------

    def tracked(self, written: str) -> str:
        """The path Snakemake tracks for a manifest path as written."""
        return shown(self.manifest.resolve(written))

    def section(self, key: str) -> Section:
        return next(s for s in self.manifest.sections if s.key == key)

    def section_outputs(self, section: Section) -> list[str]:
        return [path for t in section.tables
                for path in (self.tracked(t.out), self.tracked(t.audit_json))]

    def all_targets(self) -> list[str]:
        """Every joined table and audit (a deleted one is rebuilt) plus every report."""
        targets = []
        for section in self.manifest.sections:
            targets += self.section_outputs(section)
            targets += [shown(section.report_json), shown(section.report_md)]
        return targets

    def batch_reports(self) -> list[str]:
        return [shown(s.report_json) for s in self.manifest.sections]

    @functools.cached_property
    def report(self) -> report_layout.ReportFiles:
        """The files of ``snakemake --report`` (figures, notes, the front-page summary)."""
        return report_layout.ReportFiles.for_manifest(self.manifest, self.tracked,
                                                     self.batch_reports())

    def input_bytes(self, table: Table) -> int:
        """Bytes of a table's inputs; an input another table writes counts as that table's.

        Read once while parsing (os.stat), so resources are plain numbers: a callable on
        ``input.size_mb`` was evaluated again for every job in every scheduling round.
        """
        key = (table.kind, table.id)
        if key not in self._input_bytes:
            total = 0
            for written in table.inputs:
                try:
                    total += os.path.getsize(self.manifest.resolve(written))
                except OSError:
                    producer = self.manifest.producer(written)
                    total += self.input_bytes(producer) if producer is not None else 0
            self._input_bytes[key] = total
        return self._input_bytes[key]

    def table_mem_mb(self, table: Table) -> int:
        """Pandas/pyarrow hold a few copies of a table: scale with the input size."""
        return max(1024, int(512 + 8 * self.input_bytes(table) / 2**20))

    def table_runtime(self, table: Table) -> int:
        """Minutes; generous, the join itself runs at several hundred MB/s.

        The floor stays small: a cluster group job asks for the sum over its tables.
        """
        return max(2, int(2 + self.input_bytes(table) / 2**20 / 20))

    # --- job bodies -------------------------------------------------------------------

    def run_table(self, spec_json: str, log: str, *, executor: str | None) -> dict[str, Any]:
        """Body of every per-table job (runs in a thread of the Snakemake process)."""
        spec = json.loads(spec_json)
        return jobs.run_table(
            spec_json,
            base_dir=self.manifest.base_dir,
            log=log,
            status=jobs.status_path(spec["kind"], spec["id"], self.status_root),
            entrypoint=self.table_rules,
            executor=executor,
            extra_versions=self.extra_versions,
        )

    def write_report(self, section_key: str, outcomes: Mapping[tuple[str, str], batch.Outcome], *,
                     executor: str | None, stderr: TextIO | None = None) -> dict[str, Any]:
        return batch.write_section_report(
            self.manifest,
            self.section(section_key),
            outcomes,
            entrypoint=self.snakefile,
            argv=list(self.argv),
            executor=executor,
            extra_versions=self.extra_versions,
            stderr=stderr,
        )

    def report_job(self, section_key: str, log: str, *, executor: str | None,
                   stderr: TextIO = sys.stderr) -> dict[str, Any]:
        """Body of a report rule: every table of the manifest is done or up to date."""
        with open(log, "w", encoding="utf-8") as handle:
            written = self.write_report(section_key, batch.outcomes_after_success(self.manifest),
                                        executor=executor, stderr=handle)
        print(batch.summary_line(written, self.section(section_key).kind), file=stderr)
        return written

    # --- after a failed run (Snakemake's onerror) ------------------------------------

    def after_failure(self, *, targets: Collection[str], forget: Callable[[str], None],
                      executor: str | None, stderr: TextIO = sys.stderr) -> None:
        """Previous outputs of failed tables back in place, then every batch report and
        the report's summary (their jobs could not run)."""
        if set(targets) == {VERIFY_TARGET}:
            return  # a failed check must not rewrite the reports it checked
        self.restore_failed_tables(forget, stderr=stderr)
        self.write_reports_after_failure(executor=executor, stderr=stderr)
        self.draw_summary_after_failure(stderr=stderr)

    def restore_failed_tables(self, forget: Callable[[str], None], *,
                              stderr: TextIO = sys.stderr) -> list[Table]:
        """Put back the previous table and audit of every table that failed.

        Snakemake recorded the failed job as having made them (its inputs' checksums, its
        params): ``forget`` drops that record of a tracked path (as
        ``--cleanup-metadata`` does), so the next run reruns the table.
        """
        restored = jobs.restore_failed_tables(self.manifest, self.status_root)
        for table in restored:
            for path in (self.tracked(table.out), self.tracked(table.audit_json)):
                forget(path)
            print(f"table {table.id}: failed; kept its previous {self.tracked(table.out)} "
                  "and audit", file=stderr)
        return restored

    def write_reports_after_failure(self, *, executor: str | None,
                                    stderr: TextIO = sys.stderr) -> None:
        """The report rules cannot run, so build every report from audits + status."""
        outcomes = batch.outcomes_after_failure(self.manifest, self.status_root)
        for section in self.manifest.sections:
            self.write_report(section.key, outcomes, executor=executor, stderr=stderr)
            print(f"batch report (failed run): {shown(section.report_json)}", file=stderr)

    def draw_summary_after_failure(self, *, stderr: TextIO = sys.stderr) -> None:
        """The summary job could not run either: draw it from the reports just written,
        so that ``snakemake --report`` (which runs no job) shows this run's statuses."""
        try:
            self.report.draw_summary()
        except Exception as exc:  # the failure handler itself must not fail
            print(f"report: summary not redrawn after the failed run: "
                  f"{type(exc).__name__}: {' '.join(str(exc).split())}", file=stderr)
