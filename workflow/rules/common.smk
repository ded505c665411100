# What only Snakemake knows (the manifest it was given, the executor, its metadata),
# handed to the library: materializer.runs loads the manifest and holds every job's body.
# The same holds when another Snakefile uses this workflow as a module with
# `config: config`: the module's config is the manifest, read from the user's one config
# file, and every path resolves against the user's working directory.
import os
import sys
from pathlib import Path

import snakemake
from snakemake.io import IOFile

# The library release these rules were written for (pyproject.toml's version) and where
# it comes from; the library in use is checked against it before anything is parsed.
LIBRARY_VERSION = "0.1.0"
REPOSITORY = "https://github.com/vq-materializer/vq-materializer"
LIBRARY_INSTALL = (
    f"pip install 'vq-materializer[workflow] @ git+{REPOSITORY}@v{LIBRARY_VERSION}' "
    "(in a clone of that tag: pip install -e '.[workflow]')"
)

# This file's folder (workflow/rules), also when the workflow is a module elsewhere;
# workflow.basedir would be the folder of the user's own Snakefile.
RULES_DIR = workflow.current_basedir
CHECKOUT = Path(str(RULES_DIR)).parents[1] if RULES_DIR.is_local else None
EXAMPLE_MANIFEST = CHECKOUT / "config" / "manifest.yaml" if CHECKOUT else None


def fail_before_any_job(text):
    """Print a problem (or several) and stop with exit 2 (usage) before any job or output."""
    print(text, file=sys.stderr)
    raise SystemExit(2)


def import_library():
    """The materializer library, or this checkout's src/ when it is not installed (so a
    bare clone parses and lints; its jobs need the install); stop if neither matches."""
    try:
        import materializer
    except ModuleNotFoundError as exc:
        if exc.name != "materializer":
            raise
        source = CHECKOUT / "src" if CHECKOUT else None
        if not (source and (source / "materializer").is_dir()):
            fail_before_any_job(
                "error: the vq-materializer library is not installed: "
                f"{LIBRARY_INSTALL}, or run with --sdm conda"
            )
        print(
            f"note: vq-materializer is not installed, reading it from {source}; "
            f"to run jobs: {LIBRARY_INSTALL}",
            file=sys.stderr,
        )
        sys.path.insert(0, str(source))
        import materializer
    return materializer


def check_library_version(library):
    """Stop (exit 2) unless the library is the release these rules were written for."""
    version = getattr(library, "__version__", "unknown")
    if version != LIBRARY_VERSION:
        fail_before_any_job(
            f"error: vq-materializer {version} is installed but this workflow needs "
            f"{LIBRARY_VERSION}: {LIBRARY_INSTALL}"
        )


def refuse_path_prefix() -> None:
    """Stop (exit 2) under a module `prefix:` or `replace_prefix:`, also one on a module
    that uses this one: Snakemake would expect the outputs at other paths than the jobs
    write, which are the manifest's (it names every output)."""
    modifier = workflow.modifier.path_modifier
    while modifier is not None:
        if modifier.prefix or modifier.modifies_prefixes:
            directive = "prefix" if modifier.prefix else "replace_prefix"
            fail_before_any_job(
                f"error: a module {directive}: is not supported: the manifest names "
                "every output, so change the paths there"
            )
        modifier = modifier.inner_modifier


refuse_path_prefix()
check_library_version(import_library())
from materializer import runs
from materializer.errors import UsageError
from materializer.manifest import ManifestError


def manifest_files():
    """The config files this run loaded: the --configfile, or the user's configfile: when
    used as a module. Without any, the shipped example (a module given config skips it).
    """
    if not workflow.configfiles and EXAMPLE_MANIFEST:
        workflow.configfile(str(EXAMPLE_MANIFEST))
    return list(dict.fromkeys(os.path.abspath(p) for p in workflow.configfiles))


def load():
    """The one manifest file (its config), validated."""
    try:
        return runs.BatchRun.load(
            config,
            manifest_path=runs.one_manifest(manifest_files()),
            base_dir=workflow.config_settings.config.get("base_dir"),
            snakefile=workflow.main_snakefile,
            table_rules=str(RULES_DIR.join("tables.smk")),
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


# verify.smk as Snakemake records it on the rules defined there (a URL under github()).
VERIFY_RULES_FILE = RULES_DIR.join("verify.smk").get_path_or_uri(secret_free=True)


def is_verify_rule(target: str) -> bool:
    """Whether a target is this workflow's verify rule, under any name (a Snakefile using
    it as a module renames it: materializer_verify)."""
    return (
        workflow.is_rule(target)
        and workflow.get_rule(target).snakefile == VERIFY_RULES_FILE
    )


def run_targets() -> list[str]:
    """The run's targets, with the verify rule under its own name `verify`, so that
    RUN.after_failure recognises a failed check (which must not rewrite the reports)."""
    return [
        runs.VERIFY_TARGET if is_verify_rule(t) else t
        for t in workflow.dag_settings.targets
    ]


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
