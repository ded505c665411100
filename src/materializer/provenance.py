"""Run provenance (``ai-run-provenance-v1``): what ran, with which arguments, on which bytes.

Every file is described by the path as written, whether it exists, its kind, size and
sha256. Relative paths are relative to ``base_dir``, which the block records, so a
verifier can find the files again.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import materializer
from materializer import paths

SCHEMA = "ai-run-provenance-v1"
CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Stream a file through sha256 in 1 MiB chunks (hashlib releases the GIL)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_path(
    path: str | os.PathLike[str],
    base_dir: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
) -> dict[str, Any]:
    """Describe one file: path as written, exists, kind, size and sha256 (files only)."""
    written = os.fspath(path)
    resolved = paths.resolve(base_dir, written)
    if resolved.is_file():
        return {
            "exists": True,
            "kind": "file",
            "path": written,
            "sha256": sha256 or sha256_file(resolved),
            "size": resolved.stat().st_size,
        }
    kind = "directory" if resolved.is_dir() else "missing"
    return {"exists": kind != "missing", "kind": kind, "path": written}


class InputHasher:
    """Hash input files in a background thread while the join runs (one read each)."""

    def __init__(self, written: Sequence[str], base_dir: str | None = None) -> None:
        self._base = base_dir
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._futures: dict[str, Future[str]] = {}
        for path in dict.fromkeys(written):
            resolved = paths.resolve(base_dir, path)
            if resolved.is_file():
                self._futures[path] = self._pool.submit(sha256_file, resolved)

    def describe(self, path: str) -> dict[str, Any]:
        """The description of ``path``, waiting for its hash if it is still running."""
        future = self._futures.get(path)
        return describe_path(path, self._base, future.result() if future else None)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _normalise(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@functools.cache
def git_commit(directory: str) -> str | None:
    """The commit of the checkout holding ``directory``, or None outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "-C", directory, "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def versions(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Versions of Python, pandas, pyarrow and this package (plus any ``extra``)."""
    import pandas
    import pyarrow

    found = {
        "materializer": materializer.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "python": platform.python_version(),
    }
    found.update(extra or {})
    return dict(sorted(found.items()))


def execution_host(executor: str | None = None) -> dict[str, Any]:
    """Where this ran: host name, executor, and the SLURM job id when there is one."""
    slurm_job = os.environ.get("SLURM_JOB_ID")
    return {
        "executor": executor or ("slurm" if slurm_job else "local"),
        "hostname": socket.gethostname(),
        "slurm_job_id": slurm_job,
    }


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def build_provenance(
    *,
    entrypoint: str,
    argv: Sequence[str],
    args: Mapping[str, Any],
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    base_dir: str,
    started_at: str,
    executor: str | None = None,
    extra_versions: Mapping[str, str] | None = None,
    code_dir: str | None = None,
) -> dict[str, Any]:
    """Assemble the provenance block; ``inputs``/``outputs`` hold ready descriptions."""
    code_dir = code_dir or str(Path(materializer.__file__).resolve().parent)
    return {
        "argv": [str(a) for a in argv],
        "args": _normalise(dict(args)),
        "base_dir": os.path.abspath(base_dir),
        "entrypoint": describe_path(os.path.abspath(entrypoint)),
        "finished_at": utc_now(),
        "git_commit": git_commit(code_dir),
        "host": execution_host(executor),
        "inputs": _normalise(dict(inputs)),
        "outputs": _normalise(dict(outputs)),
        "schema": SCHEMA,
        "started_at": started_at,
        "versions": versions(extra_versions),
        "python_executable": sys.executable,
    }


class RunContext:
    """How a join was started: the entrypoint, its arguments, and the base of relative paths.

    Paths handed to the joins are as written (command line or manifest) and resolved
    against ``base_dir``; that keeps source columns and audits the same in any folder.
    """

    def __init__(
        self,
        entrypoint: str,
        *,
        argv: Sequence[str] = (),
        args: Mapping[str, Any] | None = None,
        base_dir: str = ".",
        executor: str | None = None,
        extra_versions: Mapping[str, str] | None = None,
        table_id: str | None = None,
    ) -> None:
        self.entrypoint = entrypoint
        self.argv = list(argv)
        self.args = dict(args or {})
        self.base_dir = base_dir
        self.executor = executor
        self.extra_versions = dict(extra_versions or {})
        self.table_id = table_id
        self.started_at = utc_now()
        self.alignments: dict[str, dict[str, Any]] = {}
        """Per source path as written: what its ``align_to`` matched (rows, check)."""

    def resolve(self, path: str) -> Path:
        """The path to open for a path as written."""
        return paths.resolve(self.base_dir, path)
