"""The workflow as others deploy it: its `.test` config, use as a Snakemake module from a
user's own project, the library check at start, `--sdm conda`, and a bare clone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import SNAKEFILE, SNAKEMAKE, ok, planned_rules, snakemake, write_csv

import materializer

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflow"
PROFILE = WORKFLOW / "profiles" / "default"
SITE_PACKAGES = sysconfig.get_paths()["purelib"]

MANIFEST = {
    "base_dir": "..",
    "mos_labels": {"tables": [
        {"id": "clips", "features": "data/f.csv", "labels": ["data/l.csv"],
         "out": "results/clips.parquet"},
        {"id": "more", "features": "data/g.csv", "labels": ["data/l.csv"],
         "out": "results/more.csv"},
    ]},
    "second_opinion": {"tables": [
        {"id": "clips-q", "features": "results/clips.parquet", "scores": ["q=data/q.jsonl"],
         "out": "results/clips-q.parquet"},
    ]},
}
MODULE = """
module materializer:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from materializer as materializer_*
"""

# A module's onerror is not run by Snakemake: the user's Snakefile calls it (README).
ONERROR = """

onerror:
    materializer.onerror()
"""


def user_project(root: Path, snakefile: str | None) -> Path:
    """A user's project: data, config/manifest.yaml and (unless None) their Snakefile."""
    write_csv(root / "data" / "f.csv", "clip_id,x\nc1,1\nc2,2\nc3,3\n")
    write_csv(root / "data" / "g.csv", "clip_id,x\nc1,4\nc3,5\n")
    write_csv(root / "data" / "l.csv", "clip_id,mos\nc1,3.5\nc2,4.0\nc3,2.0\n")
    write_csv(root / "data" / "q.jsonl",
              "".join(json.dumps({"clip_id": k, "score": s}) + "\n"
                      for k, s in (("c1", 0.4), ("c2", 0.9), ("c3", 0.1))))
    write_csv(root / "config" / "manifest.yaml", yaml.safe_dump(MANIFEST, sort_keys=False))
    if snakefile is not None:
        write_csv(root / "Snakefile", snakefile)
    return root


def module_snakefile(head: str = "", tail: str = "") -> str:
    return head + MODULE.format(snakefile=SNAKEFILE) + tail


def user_snakemake(project: Path, *args: str, env: dict[str, str] | None = None,
                   python: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """`snakemake` in the user's project, finding their own Snakefile."""
    command = [*(python or [str(SNAKEMAKE)]), "-c2", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, check=False,
                          env=None if env is None else {**os.environ, **env})


def what_it_says(project: Path, name: str) -> dict:
    """A report or audit apart from its provenance and the project's own folder."""
    document = json.loads((project / name).read_text(encoding="utf-8"))
    document.pop("run_provenance")
    return json.loads(json.dumps(document).replace(str(project), "PROJECT"))


def written(project: Path) -> set[str]:
    return {str(p.relative_to(project)) for p in project.rglob("*")
            if p.is_file() and ".snakemake" not in p.parts}


# --- the .test config --------------------------------------------------------------


def test_dot_test_config_runs_and_its_report_builds(tmp_path: Path) -> None:
    work = tmp_path / ".test"
    shutil.copytree(ROOT / ".test", work)
    ok(snakemake(tmp_path, "-d", str(work), "--configfile", str(work / "config" / "manifest.yaml")))

    mos = pd.read_parquet(work / "results" / "mos" / "clips.parquet")
    assert mos["mos"].tolist() == [3.9, 2.7, 4.3, 2.1]
    assert set(mos["mos_label_status"]) == {"ok"}
    scored = pd.read_parquet(work / "results" / "second-opinion" / "clips.parquet")
    assert scored["second_opinion_dover_score"].tolist() == [0.71, 0.44, 0.83, 0.29]
    for section in ("mos-labels", "second-opinion"):
        report = json.loads((work / "results" / "reports" / f"{section}.json").read_text())
        assert report["status"] == "ok"
        assert [t["status"] for t in report["tables"]] == ["ok"]

    ok(snakemake(tmp_path, "-d", str(work), "--configfile",
                 str(work / "config" / "manifest.yaml"), "--report", str(work / "report.html")))
    assert "clips-dover" in (work / "report.html").read_text(encoding="utf-8")


# --- use as a module ---------------------------------------------------------------


def test_a_module_in_a_user_project_runs_the_same_jobs_and_reports(tmp_path: Path) -> None:
    """The user's `configfile:` is the manifest; outputs land in their project, named and
    filled as in a direct run of the same manifest."""
    direct = user_project(tmp_path / "direct", None)
    ok(snakemake(direct, "--configfile", "config/manifest.yaml"))
    project = user_project(tmp_path / "module",
                           module_snakefile('configfile: "config/manifest.yaml"\n'))
    done = ok(user_snakemake(project, "--workflow-profile", str(PROFILE)))

    assert "rule materializer_mos_labels__clips:" in done.stdout + done.stderr
    assert written(project) - {"Snakefile"} == written(direct)
    for name in sorted(written(direct)):
        if name.endswith(".json") and not name.startswith("logs/"):
            assert what_it_says(project, name) == what_it_says(direct, name), name
        elif name.endswith(".parquet"):
            pd.testing.assert_frame_equal(pd.read_parquet(project / name),
                                          pd.read_parquet(direct / name))
        elif name.endswith(".csv"):
            assert (project / name).read_bytes() == (direct / name).read_bytes(), name
    report = json.loads((project / "reports/manifest/mos-labels.json").read_text())
    assert [t["id"] for t in report["tables"]] == ["clips", "more"]
    assert report["run_provenance"]["base_dir"] == str(project)
    assert not (ROOT / "config" / "results").exists()

    again = ok(user_snakemake(project, "--workflow-profile", str(PROFILE), "-n"))
    assert planned_rules(again) == set()


def test_a_module_takes_its_manifest_from_the_configfile_flag(tmp_path: Path) -> None:
    """`snakemake --configfile M` with a Snakefile that loads no config itself (or names
    config/config.yaml that does not exist, as snakedeploy writes it)."""
    project = user_project(tmp_path, module_snakefile('configfile: "config/config.yaml"\n'))
    done = ok(user_snakemake(project, "-n", "--configfile", "config/manifest.yaml"))
    assert planned_rules(done) >= {
        "materializer_mos_labels__clips", "materializer_mos_labels__more",
        "materializer_second_opinion__clips-q", "materializer_report__mos_labels",
        "materializer_all"}


def test_a_module_without_a_config_file_is_refused(tmp_path: Path) -> None:
    project = user_project(tmp_path, "config = {}\n" + module_snakefile())
    done = user_snakemake(project, "-n")
    assert done.returncode == 2
    assert "error: no manifest file: give --configfile MANIFEST" in done.stderr
    assert not (project / "results").exists()


def test_a_second_module_overrides_one_rules_resources(tmp_path: Path) -> None:
    override = """
use rule mos_labels__clips from materializer as materializer_mos_labels__clips with:
    resources:
        mem_mb=4321,
"""
    project = user_project(tmp_path, module_snakefile('configfile: "config/manifest.yaml"\n',
                                                      override))
    done = ok(user_snakemake(project, "-n"))
    jobs = {block.split(":")[0]: block for block in
            re.split(r"^\s*(?:local)?rule ", done.stdout, flags=re.M)[1:]}
    assert "mem_mb=4321" in jobs["materializer_mos_labels__clips"]
    assert "mem_mb=1024" in jobs["materializer_mos_labels__more"]

    ok(user_snakemake(project, "--workflow-profile", str(PROFILE)))
    assert pd.read_parquet(project / "results" / "clips.parquet")["mos"].tolist() == [3.5, 4.0, 2.0]


def failing_more(project: Path) -> None:
    """The manifest with table `more` asking for a label column its labels lack."""
    manifest = json.loads(json.dumps(MANIFEST))
    manifest["mos_labels"]["tables"][1]["label_mos_column"] = "no_such_column"
    write_csv(project / "config" / "manifest.yaml", yaml.safe_dump(manifest, sort_keys=False))


def files(project: Path, *names: str) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in names}


def test_a_module_whose_onerror_is_wired_handles_a_failed_rerun_as_a_direct_run(
        tmp_path: Path) -> None:
    """With `onerror: materializer.onerror()` the failed table's previous output and audit
    are put back byte for byte and every batch report is written, the same reports as a
    direct run's; a failed `materializer_verify` then leaves those reports alone."""
    more = ("results/more.csv", "results/more.csv.audit.json")
    reports = [f"reports/manifest/{section}.{ext}" for section in ("mos-labels", "second-opinion")
               for ext in ("json", "md")]
    direct = user_project(tmp_path / "direct", None)
    project = user_project(tmp_path / "module", module_snakefile(
        'configfile: "config/manifest.yaml"\n', ONERROR))
    ok(snakemake(direct, "--configfile", "config/manifest.yaml"))
    ok(user_snakemake(project, "--workflow-profile", str(PROFILE)))
    previous = files(project, *more)
    failing_more(direct)
    failing_more(project)

    assert snakemake(direct, "--configfile", "config/manifest.yaml").returncode == 1
    done = user_snakemake(project, "--workflow-profile", str(PROFILE))
    assert done.returncode == 1, done.stderr[-3000:]
    assert "table more: failed; kept its previous results/more.csv and audit" in done.stderr
    assert "batch report (failed run): reports/manifest/mos-labels.json" in done.stderr
    assert files(project, *more) == previous
    for name in reports:
        if name.endswith(".json"):
            assert what_it_says(project, name) == what_it_says(direct, name), name
    report = json.loads((project / reports[0]).read_text())
    assert report["status"] == "failed"
    assert [t["status"] for t in report["tables"]] == ["ok", "error"]
    again = ok(user_snakemake(project, "--workflow-profile", str(PROFILE), "-n"))
    assert "materializer_mos_labels__more" in planned_rules(again)

    # A failed check is not a failed batch: the reports it checked stay as they are.
    written_reports = files(project, *reports)
    write_csv(project / "data" / "f.csv", "clip_id,x\nc1,1\nc2,2\nc3,4\n")
    check = user_snakemake(project, "materializer_verify")
    assert check.returncode == 1, check.stderr[-3000:]
    assert "1 changed" in check.stderr
    assert "batch report (failed run)" not in check.stderr
    assert files(project, *reports) == written_reports


@pytest.mark.parametrize("directive", ["prefix", "replace_prefix"])
def test_a_module_prefix_is_refused_before_any_job(tmp_path: Path, directive: str) -> None:
    """The manifest names every output; a prefix would make Snakemake look elsewhere."""
    value = '"results"' if directive == "prefix" else '{"results/": "elsewhere/"}'
    snakefile = module_snakefile('configfile: "config/manifest.yaml"\n').replace(
        "    config:\n", f"    {directive}:\n        {value}\n    config:\n")
    project = user_project(tmp_path, snakefile)
    before = written(project)
    done = user_snakemake(project)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if "error" in line] == [
        f"error: a module {directive}: is not supported: the manifest names every output, "
        "so change the paths there"]
    assert written(project) == before


# --- the library: its version, --sdm conda, a clone without it ---------------------


def test_another_library_version_stops_before_any_job(tmp_path: Path) -> None:
    """An older library found first (here on PYTHONPATH): exit 2, naming the install."""
    fake = tmp_path / "lib" / "materializer"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "0.0.1"\n', encoding="utf-8")
    project = user_project(tmp_path / "project", None)
    done = user_snakemake(project, "-s", str(SNAKEFILE), "--configfile", "config/manifest.yaml",
                          env={"PYTHONPATH": str(tmp_path / "lib")})
    assert done.returncode == 2
    error = [line for line in done.stderr.splitlines() if "vq-materializer" in line]
    assert error == [f"error: vq-materializer 0.0.1 is installed but this workflow needs "
                     f"{materializer.__version__}: pip install 'vq-materializer[workflow] @ "
                     f"git+https://github.com/vq-materializer/vq-materializer@v"
                     f"{materializer.__version__}' (in a clone of that tag: pip install -e "
                     f"'.[workflow]')"]
    assert written(project) == written(user_project(tmp_path / "fresh", None))


def bare_python() -> list[str]:
    """This interpreter without site initialisation: the installed packages are on
    PYTHONPATH, but the editable install of the library (a .pth file) is not."""
    return [sys.executable, "-S", "-m"]


BARE = {"PYTHONPATH": SITE_PACKAGES}


def test_bare_python_does_not_see_the_library() -> None:
    done = subprocess.run([sys.executable, "-S", "-c", "import materializer"], cwd="/",
                          capture_output=True, text=True, env={**os.environ, **BARE},
                          check=False)
    assert "No module named 'materializer'" in done.stderr


def deployed_workflow(root: Path) -> Path:
    """Only workflow/ (as a module fetched from elsewhere has it): no src/ to fall back on."""
    shutil.copytree(WORKFLOW, root / "workflow", symlinks=True)
    return root / "workflow" / "Snakefile"


def test_without_the_library_a_deployed_workflow_stops_naming_the_install(tmp_path: Path) -> None:
    snakefile = deployed_workflow(tmp_path / "deployed")
    project = user_project(tmp_path / "project", None)
    done = user_snakemake(project, "-s", str(snakefile), "--configfile", "config/manifest.yaml",
                          "-n", env=BARE, python=[*bare_python(), "snakemake"])
    assert done.returncode == 2
    assert ("error: the vq-materializer library is not installed: pip install "
            "'vq-materializer[workflow] @ git+") in done.stderr
    assert "(in a clone of that tag: pip install -e '.[workflow]'), or run with --sdm conda" \
        in done.stderr
    assert "Traceback" not in done.stderr


FAKE_CONDA = """#!/bin/sh
# Just enough of conda for `snakemake --sdm conda -n`: an environment "created" by
# linking the library under test into its site-packages.
envs={envs}
case "$1 $2" in
  "--version "*) echo "conda 24.9.2" ;;
  "info --json")
    echo '{{"conda_prefix": "{root}", "envs_dirs": ["'$envs'"], "platform": "linux-64"}}' ;;
  "config --get") echo '{{"get": {{"channel_priority": "strict"}}}}' ;;
  "env list")
    printf '{{"envs": [%s]}}' "$(ls -d $envs/* 2>/dev/null | sed 's/.*/"&"/' | paste -sd,)" ;;
  "env create")
    site=$envs/$4/lib/python{python}/site-packages
    mkdir -p $site && cp "$6" $envs/$4/spec.yaml && ln -s {library} $site/materializer ;;
  *) echo "fake conda: unexpected: $*" >&2; exit 1 ;;
esac
"""


def test_sdm_conda_injects_the_library_environment_before_parsing(tmp_path: Path) -> None:
    """With --sdm conda the global `conda:` environment provides the library to the
    parse and the run: blocks; without the install or a src/ the workflow still plans."""
    bin_dir, envs = tmp_path / "bin", tmp_path / "envs"
    bin_dir.mkdir()
    (bin_dir / "conda").write_text(FAKE_CONDA.format(
        envs=envs, root=tmp_path, library=Path(materializer.__file__).parent,
        python=f"{sys.version_info.major}.{sys.version_info.minor}"), encoding="utf-8")
    (bin_dir / "conda").chmod(0o755)
    snakefile = deployed_workflow(tmp_path / "deployed")
    project = user_project(tmp_path / "project", None)
    env = {**BARE, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = ok(user_snakemake(project, "-s", str(snakefile), "--configfile",
                             "config/manifest.yaml", "-n", "--sdm", "conda",
                             "--conda-frontend", "conda", env=env,
                             python=[*bare_python(), "snakemake"]))
    assert {"mos_labels__clips", "second_opinion__clips-q"} <= planned_rules(done)
    [spec_file] = envs.glob("*/spec.yaml")
    spec = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
    declared = yaml.safe_load((WORKFLOW / "envs" / "materializer.yaml").read_text())
    python_pin = f"python =={sys.version_info.major}.{sys.version_info.minor}"
    assert spec == {**declared, "dependencies": [*declared["dependencies"], python_pin]}


def clone_files(target: Path) -> None:
    """The project's files as a fresh clone has them (tracked and new, nothing ignored)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_symlink() or source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                (target / name).symlink_to(os.readlink(source))
            else:
                shutil.copy2(source, target / name)


def test_lint_and_format_are_clean_in_a_clone_without_the_library(tmp_path: Path) -> None:
    """As the workflow catalog runs them: `snakemake --lint` and `snakefmt --check` in
    the clone, with Snakemake but not the library installed."""
    clone = tmp_path / "clone"
    clone_files(clone)
    lint = ok(subprocess.run([*bare_python(), "snakemake", "--lint"], cwd=clone,
                             capture_output=True, text=True, env={**os.environ, **BARE},
                             check=False))
    assert "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr
    assert (f"note: vq-materializer is not installed, reading it from {clone / 'src'}; "
            "to run jobs: pip install") in lint.stderr
    fmt = ok(subprocess.run([*bare_python(), "snakefmt", "--check", "workflow"], cwd=clone,
                            capture_output=True, text=True, env={**os.environ, **BARE},
                            check=False))
    assert "would be changed" not in fmt.stderr
