"""One path rule: ``~``, ``..``, a symlinked folder and an absolute path in a manifest
name the same file for Snakemake, the job that reads it, its audit and
``materialize-verify``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

from materializer.provenance import sha256_file

BIN = Path(sys.executable).parent
FEATURES = "key,x\na,1\nb,2\n"


def run(argv: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=300)


def test_home_parent_symlinked_and_absolute_paths_agree_everywhere(tmp_path: Path) -> None:
    home, project, outside, elsewhere = (tmp_path / n for n in ("home", "project", "outside",
                                                                 "elsewhere"))
    for folder, text in ((home / "feats", FEATURES), (outside, FEATURES.replace("1", "5")),
                         (elsewhere, FEATURES.replace("2", "7")),
                         (tmp_path / "abs", FEATURES.replace("x", "y"))):
        folder.mkdir(parents=True)
        (folder / "f.csv").write_text(text)
    (project / "data").mkdir(parents=True)
    (project / "data" / "l.csv").write_text("key,mos\na,3\nb,4\n")
    (project / "linked").symlink_to(elsewhere)
    written = {"home": "~/feats/f.csv", "up": "../outside/f.csv", "linked": "linked/f.csv",
               "absolute": str(tmp_path / "abs" / "f.csv")}
    opened = {"home": home / "feats" / "f.csv", "up": outside / "f.csv",
              "linked": elsewhere / "f.csv", "absolute": tmp_path / "abs" / "f.csv"}
    tables = "".join(f"    - {{id: {name}, features: '{path}', labels: [data/l.csv], "
                     f"out: out/{name}.csv}}\n" for name, path in written.items())
    (project / "manifest.yaml").write_text(f"mos_labels:\n  tables:\n{tables}")
    snakemake = [str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), "-d",
                 str(project), "--configfile", str(project / "manifest.yaml"), "-c", "1"]

    done = run(snakemake, project, home)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, path in written.items():
        audit = json.loads((project / "out" / f"{name}.csv.audit.json").read_text())
        cited = audit["run_provenance"]["inputs"]["features"]
        assert cited["path"] == path and cited["sha256"] == sha256_file(opened[name]), name
        assert audit["match_rate"] == 1.0
    assert "Nothing to be done" in run([*snakemake, "-n"], project, home).stdout

    report = project / "reports" / "manifest" / "mos-labels.json"
    verify = [str(BIN / "materialize-verify"), str(report)]
    assert run(verify, project, home).returncode == 0
    (home / "feats" / "f.csv").write_text(FEATURES + "c,3\n")
    checked = run(verify, project, home)
    assert checked.returncode == 1 and "changed" in checked.stdout
    assert "mos_labels__home" in run([*snakemake, "-n"], project, home).stdout
