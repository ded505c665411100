"""The files others deploy from: the catalog settings, the licence, the Actions workflow
(the same stages as .ci/run), the conda environments and the one release they pin."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

import materializer

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
COMMON = (ROOT / "workflow" / "rules" / "common.smk").read_text(encoding="utf-8")
PREAMBLE = {"set -euo pipefail", 'cd "$(dirname "$0")/.."'}


def commands(script: str) -> list[str]:
    """The shell commands of a script, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#") and line not in PREAMBLE]


def constant(name: str) -> str:
    return re.search(rf'^{name} = "([^"]+)"$', COMMON, re.M).group(1)


def test_actions_steps_run_what_ci_runs() -> None:
    ci = commands((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    actions = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    [job] = actions["jobs"].values()
    steps = [step for step in job["steps"] if "run" in step]
    assert [c for step in steps for c in commands(step["run"])] == ci
    names = [step["name"] for step in steps]
    for stage in ("ruff", "snakefmt", "snakemake --lint", "Test suite", ".test", "report",
                  "SLURM"):
        assert any(stage in name for name in names), stage
    assert job["steps"][0]["uses"].startswith("actions/checkout@")
    assert job["timeout-minutes"] <= 90
    assert {"push", "pull_request"} <= set(actions[True])  # YAML reads the key `on` as True


def test_ci_commands_name_existing_tools_and_files() -> None:
    """Every `.venv*/bin/TOOL` is one an extra installs; every repository path exists."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    provided = {"python", "pip", "snakemake", *(
        re.match(r"[A-Za-z0-9_-]+", dep).group(0) for deps in extras.values() for dep in deps)}
    for command in commands((ROOT / ".ci" / "run").read_text(encoding="utf-8")):
        for word in shlex.split(command, posix=True):
            tool = re.match(r"(?:\$PWD/)?\.venv(?:-slurm)?/bin/(\S+)$", word)
            if tool:
                assert tool.group(1) in provided, command
            elif re.match(r"(tests|src|workflow)/\S+$", word):
                assert (ROOT / word).exists(), word


def test_catalog_settings_name_existing_files_and_a_working_report() -> None:
    settings = yaml.safe_load((ROOT / ".snakemake-workflow-catalog.yml").read_text())
    usage = settings["usage"]
    flags = shlex.split(usage["mandatory-flags"]["flags"])
    assert flags[0] == "--configfile" and (ROOT / flags[1]).is_file()
    assert usage["mandatory-flags"]["desc"].strip()
    assert set(usage["software-stack-deployment"]) == {"conda", "apptainer", "apptainer+conda"}
    assert usage["report"] is True
    snakefile = (ROOT / "workflow" / "Snakefile").read_text(encoding="utf-8")
    report = re.search(r'^report: "([^"]+)"$', snakefile, re.M).group(1)
    assert (ROOT / "workflow" / report).is_file()
    assert (ROOT / "config" / "README.md").is_file()  # the catalog shows it as the config docs
    assert (ROOT / ".test" / "config" / "manifest.yaml").is_file()


def test_the_licence_file_is_the_one_pyproject_declares() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_the_workflow_pins_the_release_of_its_library_everywhere() -> None:
    version = PYPROJECT["project"]["version"]
    assert constant("LIBRARY_VERSION") == version == materializer.__version__
    pin = f"vq-materializer @ git+{constant('REPOSITORY')}@v{version}"
    for env in ("materializer.yaml", "report.yaml"):
        spec = yaml.safe_load((ROOT / "workflow" / "envs" / env).read_text(encoding="utf-8"))
        assert {"pip": [pin]} in spec["dependencies"], env
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    repository = constant("REPOSITORY").removeprefix("https://github.com/")
    assert f'github("{repository}", path="workflow/Snakefile", tag="v{version}")' in readme
    assert f"snakedeploy deploy-workflow {constant('REPOSITORY')} " in readme
    assert f"--tag v{version}" in readme


def conda_name(requirement: str) -> str:
    """The conda-forge name of a PyPI requirement (the few that differ)."""
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
    renamed = {"fastjsonschema": "python-fastjsonschema", "matplotlib": "matplotlib-base"}
    return renamed.get(name, name)


def test_the_injected_environment_holds_every_dependency_and_no_python() -> None:
    """conda-inject refuses `python` (it pins Snakemake's); the library's and the plot
    jobs' dependencies come from conda-forge with pyproject's lower bounds."""
    spec = yaml.safe_load((ROOT / "workflow" / "envs" / "materializer.yaml").read_text())
    assert spec["channels"] == ["conda-forge"]
    listed = {re.match(r"[A-Za-z0-9_.-]+", d).group(0): d
              for d in spec["dependencies"] if isinstance(d, str)}
    assert "python" not in listed
    wanted = [*PYPROJECT["project"]["dependencies"], "matplotlib>=3.8"]
    for requirement in wanted:
        bound = re.search(r">=\S+", requirement).group(0)
        assert listed.get(conda_name(requirement)) == conda_name(requirement) + bound, requirement
    assert {"pip", "git"} <= set(listed)
    snakefile = (ROOT / "workflow" / "Snakefile").read_text(encoding="utf-8")
    assert re.search(r'^conda: "envs/materializer.yaml"$', snakefile, re.M)
    assert snakefile.index("conda:") < snakefile.index('include: "rules/common.smk"')
