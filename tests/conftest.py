"""Shared helpers: run the commands as a user does, and build tiny tables on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
# Real public data that may not be redistributed here (DOVER, Q-Align): read in place.
SHARED_REAL = Path(os.environ.get("MATERIALIZER_SHARED_DATA",
                                  ROOT.parent / "shared" / "data" / "real"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_command(name: str, *args: str, cwd: Path) -> Result:
    """Run a console command of this package in ``cwd`` (a fresh interpreter)."""
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / name), *args], cwd=cwd, capture_output=True,
                          text=True, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def mos(tmp_path: Path):
    """``mos("--features", ...)`` runs materialize-mos-labels in tmp_path."""
    return lambda *args: run_command("materialize-mos-labels", *args, cwd=tmp_path)


@pytest.fixture
def second_opinion(tmp_path: Path):
    """``second_opinion("--features", ...)`` runs the second-opinion command in tmp_path."""
    return lambda *args: run_command("materialize-second-opinion-features", *args, cwd=tmp_path)


def write_table(path: Path, rows: list[dict] | pd.DataFrame) -> Path:
    """Write rows in the format the extension names (JSON as written, no pandas typing)."""
    frame = rows if isinstance(rows, pd.DataFrame) else None
    suffix = path.suffix
    if suffix == ".json":
        path.write_text(json.dumps(rows if frame is None else frame.to_dict("records")))
    elif suffix in (".jsonl", ".ndjson"):
        records = rows if frame is None else frame.to_dict("records")
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif suffix == ".csv":
        (frame if frame is not None else pd.DataFrame(rows)).to_csv(path, index=False)
    else:
        (frame if frame is not None else pd.DataFrame(rows)).to_parquet(path, index=False)
    return path


def read_any(path: Path) -> pd.DataFrame:
    """Read an output table back for assertions."""
    if path.suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix in (".jsonl", ".ndjson"):
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    return pd.DataFrame(json.loads(path.read_text())["rows"])


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to prove nothing changed or appeared)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# --- running the workflow as a user does -------------------------------------------

SNAKEFILE = ROOT / "workflow" / "Snakefile"
SNAKEMAKE = Path(sys.executable).parent / "snakemake"

def snakemake(cwd: Path, *args: str, snakefile: Path | None = SNAKEFILE) \
        -> subprocess.CompletedProcess[str]:
    """Run snakemake as a user does (with the project's default workflow profile)."""
    command = [str(SNAKEMAKE), "-c2", *args]
    if snakefile is not None:
        command[1:1] = ["-s", str(snakefile)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)

def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done

def write_csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path

def planned_rules(done: subprocess.CompletedProcess[str]) -> set[str]:
    """The rule names a dry run would execute (from its job-stats table)."""
    text = done.stdout + done.stderr
    if "Nothing to be done" in text:
        return set()
    stats = text.split("Job stats:")[1].split("total")[0]
    return {line.split()[0] for line in stats.splitlines()[3:] if line.strip()}
