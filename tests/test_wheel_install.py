"""The package as a wheel, installed without ``-e`` into a fresh venv: the workflow of
this checkout runs the shipped example from another folder with it.

This proves the wheel alone carries what the workflow reads from the package (the
manifest schema is package data, not ``workflow/schemas`` beside a checkout's ``src/``).
The wheel's dependencies come from the package index (about 40 s with a warm pip
cache); when it cannot be reached the test is skipped, unless
``MATERIALIZER_REQUIRE_WHEEL_INSTALL=1``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_IN_WHEEL = "materializer/schemas/manifest.schema.yaml"


def run(*command: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a command with nothing of this test's environment pointing at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def passed(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, (done.stdout[-3000:] + done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the package sources (no build files in the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    passed(run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
               root / "dist", source, cwd=root))
    (built,) = (root / "dist").glob("vq_materializer-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel and its dependencies."""
    folder = tmp_path_factory.mktemp("venv") / "venv"
    passed(run(sys.executable, "-m", "venv", folder, cwd=folder.parent))
    python = folder / "bin" / "python"
    passed(run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel, cwd=folder.parent))
    deps = run(python, "-m", "pip", "install", "--quiet", f"{wheel}[workflow]",
               cwd=folder.parent)
    if deps.returncode != 0:
        message = "cannot install the wheel's dependencies: " + deps.stderr[-1500:]
        if os.environ.get("MATERIALIZER_REQUIRE_WHEEL_INSTALL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return folder


def test_wheel_ships_the_manifest_schema(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = archive.read(SCHEMA_IN_WHEEL)
    assert "materializer/runs.py" in names
    assert shipped == (ROOT / "src" / SCHEMA_IN_WHEEL).read_bytes()
    assert not any(name.startswith(("workflow/", "tests/")) for name in names)


def test_installed_package_is_the_wheel_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    probe = ("import json, materializer; from materializer import manifest; "
             "print(json.dumps([materializer.__file__, str(manifest.schema_path()), "
             "manifest._load_schema(None)['title']]))")
    module, schema, title = json.loads(passed(run(venv / "bin" / "python", "-c", probe,
                                                  cwd=tmp_path)).stdout)
    site = venv / "lib"
    assert Path(module).resolve().is_relative_to(site.resolve()), module
    assert not Path(module).resolve().is_relative_to((ROOT / "src").resolve()), module
    assert Path(schema).resolve().is_relative_to(site.resolve()) and Path(schema).is_file()
    assert title == "vq-materializer batch manifest"


@pytest.fixture(scope="module")
def example(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The shipped example, run by the fresh venv's snakemake in a folder outside the
    checkout (the checkout's workflow with ``-s`` and ``-d``, as the README says)."""
    outside = tmp_path_factory.mktemp("outside")
    work = outside / "elsewhere"
    shutil.copytree(ROOT / "config", work / "config",
                    ignore=shutil.ignore_patterns("__pycache__"))
    args = [str(venv / "bin" / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"),
            "-d", str(work), "--configfile", str(work / "config" / "manifest.yaml"), "-c", "1"]
    passed(run(*args, cwd=outside))
    return work, args


def test_example_runs_from_another_folder_with_the_installed_wheel(
        example: tuple[Path, list[str]], venv: Path) -> None:
    work, _ = example
    reports = work / "results" / "reports"
    for name in ("mos-labels", "second-opinion"):
        report = json.loads((reports / f"{name}.json").read_text(encoding="utf-8"))
        assert report["status"] == "ok", report
        assert report["summary"]["failed_tables"] == 0
        assert (reports / f"{name}.md").is_file()
    assert (reports / "plots" / "summary.html").is_file()
    audit = json.loads((work / "results" / "mos" / "konvid-1k.audit.json").read_text())
    provenance = audit["run_provenance"]
    assert Path(provenance["python_executable"]).parent == venv / "bin"
    assert provenance["entrypoint"]["path"] == str(ROOT / "workflow" / "rules" / "tables.smk")


def test_html_report_builds_with_the_installed_wheel(example: tuple[Path, list[str]],
                                                     venv: Path) -> None:
    work, args = example
    passed(run(*args, "--report", str(work / "report.html"), cwd=work.parent))
    assert (work / "report.html").stat().st_size > 0
