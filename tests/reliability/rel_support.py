"""Helpers shared by the reliability tests: file bytes, snapshots, and `snakemake` runs."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
BIN = Path(sys.executable).parent
SNAKEMAKE = BIN / "snakemake"


def parquet_bytes(rows: list[dict] | pd.DataFrame) -> bytes:
    """A parquet file's bytes for rows (or a frame)."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


def write_files(folder: Path, files: dict[str, bytes | str]) -> None:
    """Write every ``name -> content`` under ``folder`` (text as UTF-8, bytes as given)."""
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_bytes(content.encode("utf-8"))
        else:
            path.write_bytes(content)


def tree(folder: Path, skip: tuple[str, ...] = (".snakemake",)) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, leaving out Snakemake's own bookkeeping."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if relative.parts[0] in skip or not path.is_file():
            continue
        found[str(relative)] = path.read_bytes()
    return found


def all_entries(folder: Path) -> set[str]:
    """Every file and folder name under ``folder`` (to prove nothing new appeared)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def snakemake_argv(folder: Path, *args: str, manifest: str = "manifest.yaml") -> list[str]:
    argv = [str(SNAKEMAKE), "-s", str(SNAKEFILE), "-d", str(folder)]
    if manifest:
        argv += ["--configfile", str(folder / manifest)]
    return [*argv, *args]


def snakemake_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_snakemake(folder: Path, *args: str, manifest: str = "manifest.yaml",
                  timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``snakemake -s workflow/Snakefile -d FOLDER --configfile FOLDER/MANIFEST ARGS``."""
    return subprocess.run(snakemake_argv(folder, *args, manifest=manifest), cwd=folder,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          env=snakemake_env())


def start_snakemake(folder: Path, *args: str, manifest: str = "manifest.yaml",
                    log_name: str = "snakemake-run.txt") -> tuple[subprocess.Popen, Path]:
    """Start ``snakemake`` in its own process group; output goes to a file outside ``folder``."""
    log = folder.parent / f"{folder.name}.{log_name}"
    handle = open(log, "w")  # noqa: SIM115 - closed by the child owning it after the fork
    try:
        process = subprocess.Popen(snakemake_argv(folder, *args, manifest=manifest), cwd=folder,
                                   stdout=handle, stderr=subprocess.STDOUT, env=snakemake_env(),
                                   start_new_session=True)
    finally:
        handle.close()
    return process, log


def wait_for(predicate, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group this test started (never anything else)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def temp_files(folder: Path) -> list[str]:
    """Temporary files the library writes beside a target (``.NAME.*.tmp``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*.tmp")
                  if ".snakemake" not in p.parts)
