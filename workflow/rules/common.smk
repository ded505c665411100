# Everything that is not a rule: the manifest (loaded, validated, resolved), paths,
# params and resource functions, and the calls into the library.
import json
import os
import sys
from pathlib import Path

import snakemake
from snakemake.io import IOFile

from materializer import batch, jobs
from materializer.manifest import ManifestError, load_manifest

EXAMPLE_MANIFEST = Path(workflow.basedir).parent / "config" / "manifest.yaml"
SNAKEMAKE_VERSION = {"snakemake": snakemake.__version__}
RULES_DIR = Path(workflow.basedir) / "rules"


def fail_before_any_job(text):
    """Print a problem (or several) and stop with exit 2 (usage) before any job or output."""
    print(text, file=sys.stderr)
    raise SystemExit(2)


def shown(path):
    """A path relative to the working directory when it lies under it, else absolute."""
    path = os.path.abspath(path)
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def manifest_path():
    """The one --configfile, or the shipped example (loaded only then: nothing merges)."""
    given = [str(p) for p in workflow.overwrite_configfiles]
    if len(given) > 1:
        fail_before_any_job(
            "error: give one manifest (--configfile); got "
            + ", ".join(given)
            + ". Put MOS and second-opinion tables into one combined manifest."
        )
    if given:
        return shown(given[0])
    workflow.configfile(str(EXAMPLE_MANIFEST))
    return shown(EXAMPLE_MANIFEST)


def load():
    path = manifest_path()
    override = workflow.config_settings.config.get("base_dir")
    try:
        return load_manifest(
            dict(config),
            manifest_path=path,
            base_dir=None if override is None else str(override),
            schema=Path(workflow.basedir) / "schemas" / "manifest.schema.yaml",
        )
    except ManifestError as exc:
        fail_before_any_job(exc.report())


MANIFEST = load()


def smk(written):
    """The path Snakemake tracks for a manifest path as written."""
    return shown(MANIFEST.resolve(written))


def rule_name(table):
    return f"{table.kind.replace('-', '_')}__{table.id}"


def log_path(table):
    return f"logs/{table.kind}/{table.id}.log"


def table_params(table):
    """The table's spec (options and paths as written) as one sorted JSON string.

    Returned through a function so Snakemake does not format it like a wildcard
    pattern (a regex such as ([0-9]{6,}) would break); still a rerun trigger.
    """
    spec = table.spec_json()

    def spec_json(wildcards):
        return spec

    return spec_json


_INPUT_BYTES = {}


def input_bytes(table):
    """Bytes of a table's inputs; an input another table writes counts as that table's.

    Read once while parsing (os.stat), so resources are plain numbers: a callable on
    `input.size_mb` was evaluated again for every job in every scheduling round.
    """
    key = (table.kind, table.id)
    if key not in _INPUT_BYTES:
        total = 0
        for written in table.inputs:
            try:
                total += os.path.getsize(MANIFEST.resolve(written))
            except OSError:
                producer = MANIFEST.producer(written)
                total += input_bytes(producer) if producer is not None else 0
        _INPUT_BYTES[key] = total
    return _INPUT_BYTES[key]


def table_mem_mb(table):
    """Pandas/pyarrow hold a few copies of a table: scale with the input size."""
    return max(1024, int(512 + 8 * input_bytes(table) / 2**20))


def table_runtime(table):
    """Minutes; generous, the join itself runs at several hundred MB/s.

    The floor stays small: a cluster group job asks for the sum over its tables.
    """
    return max(2, int(2 + input_bytes(table) / 2**20 / 20))


def executor_name():
    """'local' or the executor plugin's name; on SLURM the provenance says slurm itself."""
    if os.environ.get("SLURM_JOB_ID"):
        return None
    plugin = workflow.executor_plugin
    return getattr(plugin, "name", None) or "local"


def run_table_job(kind, spec_json, log, rules_file):
    """Body of every per-table job (runs in a thread of the Snakemake process)."""
    spec_id = json.loads(spec_json)["id"]
    jobs.run_table(
        spec_json,
        base_dir=MANIFEST.base_dir,
        log=log,
        status=jobs.status_path(kind, spec_id),
        entrypoint=str(RULES_DIR / rules_file),
        executor=executor_name(),
        extra_versions=SNAKEMAKE_VERSION,
    )


def section_outputs(section):
    return [path for t in section.tables for path in (smk(t.out), smk(t.audit_json))]


def all_targets():
    """Every joined table and audit (a deleted one is rebuilt) plus every report."""
    targets = []
    for section in MANIFEST.sections:
        targets += section_outputs(section)
        targets += [shown(section.report_json), shown(section.report_md)]
    return targets


def write_report(section_key, outcomes, stderr=None):
    section = next(s for s in MANIFEST.sections if s.key == section_key)
    return batch.write_section_report(
        MANIFEST,
        section,
        outcomes,
        entrypoint=workflow.main_snakefile,
        argv=sys.argv[1:],
        executor=executor_name(),
        extra_versions=SNAKEMAKE_VERSION,
        stderr=stderr,
    )


def report_job(section_key, log):
    """Body of a report rule: every table of the manifest is done or up to date."""
    with open(log, "w") as handle:
        written = write_report(
            section_key, batch.outcomes_after_success(MANIFEST), stderr=handle
        )
    print(batch.summary_line(written, report_kind(section_key)), file=sys.stderr)


def report_kind(section_key):
    return next(s.kind for s in MANIFEST.sections if s.key == section_key)


def restore_failed_tables():
    """onerror: put back the previous table and audit of every table that failed.

    Snakemake recorded the failed job as having made them (its inputs' checksums, its
    params): drop that record, as `--cleanup-metadata` does, so the next run reruns it.
    """
    for table in jobs.restore_failed_tables(MANIFEST, jobs.STATUS_ROOT):
        for path in (smk(table.out), smk(table.audit_json)):
            workflow.persistence.cleanup_metadata(IOFile(path))
        print(
            f"table {table.id}: failed; kept its previous {smk(table.out)} and audit",
            file=sys.stderr,
        )


def after_failure():
    """onerror: previous outputs of failed tables back in place, then every report."""
    if set(workflow.dag_settings.targets) == {"verify"}:
        return  # a failed check must not rewrite the reports it checked
    restore_failed_tables()
    write_reports_after_failure()


def write_reports_after_failure():
    """The report rule cannot run, so build every report from audits + status."""
    outcomes = batch.outcomes_after_failure(MANIFEST, jobs.STATUS_ROOT)
    for section in MANIFEST.sections:
        write_report(section.key, outcomes, stderr=sys.stderr)
        print(
            f"batch report (failed run): {shown(section.report_json)}", file=sys.stderr
        )
