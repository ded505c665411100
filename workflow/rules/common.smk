# What only Snakemake knows (the --configfile, the executor, its metadata), handed to
# the library: materializer.runs loads the manifest and holds every job's body.
import sys
from pathlib import Path

import snakemake
from snakemake.io import IOFile

from materializer import runs
from materializer.errors import UsageError
from materializer.manifest import ManifestError

EXAMPLE_MANIFEST = Path(workflow.basedir).parent / "config" / "manifest.yaml"


def fail_before_any_job(text):
    """Print a problem (or several) and stop with exit 2 (usage) before any job or output."""
    print(text, file=sys.stderr)
    raise SystemExit(2)


def load():
    """The one --configfile (or the shipped example, loaded only then), validated."""
    given = [str(p) for p in workflow.overwrite_configfiles]
    try:
        path = runs.one_manifest(given, example=str(EXAMPLE_MANIFEST))
        if not given:
            workflow.configfile(str(EXAMPLE_MANIFEST))
        return runs.BatchRun.load(
            config,
            manifest_path=path,
            base_dir=workflow.config_settings.config.get("base_dir"),
            snakefile=workflow.main_snakefile,
            table_rules=str(Path(workflow.basedir) / "rules" / "tables.smk"),
            extra_versions={"snakemake": snakemake.__version__},
        )
    except ManifestError as exc:
        fail_before_any_job(exc.report())
    except UsageError as exc:
        fail_before_any_job(f"error: {exc}")


RUN = load()
MANIFEST = RUN.manifest


def table_params(table):
    """The table's spec (options and paths as written) as one sorted JSON string.

    Returned through a function so Snakemake does not format it like a wildcard
    pattern (a regex such as ([0-9]{6,}) would break); still a rerun trigger.
    """
    spec = table.spec_json()

    def spec_json(wildcards):
        return spec

    return spec_json


def executor():
    """The executor for provenance, looked up when a job runs (set by then)."""
    return runs.executor_name(getattr(workflow.executor_plugin, "name", None))


def forget_metadata(path):
    """Drop Snakemake's record of an output, as `--cleanup-metadata` does."""
    workflow.persistence.cleanup_metadata(IOFile(path))


def report_files(wildcards):
    """Every report file; for a command that runs no job (`--report`), those that exist.

    An input function, so it is asked when the DAG is built: a run or a dry run
    (`Workflow.execute`) has set the executor plugin by then, `--report` never does.
    """
    return RUN.report.targets(
        jobs_run=workflow.executor_plugin is not None, log=sys.stderr
    )
