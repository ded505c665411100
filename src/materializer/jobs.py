"""What one per-table workflow job runs: the library join, a log, and a status file.

Jobs run as threads of the Snakemake process, so they write to their own log handle and
never touch ``sys.stderr``. Besides its declared outputs (the table and its audit) each
job leaves a small status file: Snakemake deletes a failed job's outputs, and the batch
report written after a failure needs to know which tables failed and why.

Snakemake also deletes a job's existing outputs before it runs, so a rerun that fails would
lose the previous table. A job that succeeds therefore hard-links its table and audit to
hidden sidecars beside them (``.NAME.previous``); after a failed run the workflow's
``onerror`` puts them back with :func:`restore_failed_tables` (through
:meth:`materializer.runs.BatchRun.after_failure`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from materializer import paths
from materializer.allocator import use_jemalloc
from materializer.errors import MaterializeError
from materializer.kinds import KINDS
from materializer.manifest import Manifest, Table
from materializer.provenance import RunContext
from materializer.sources import Source

STATUS_ROOT = os.path.join("logs", "status")
PREVIOUS_SUFFIX = ".previous"


def status_path(kind: str, table_id: str, root: str = STATUS_ROOT) -> str:
    """Where the job of one table leaves its status (relative to the working directory)."""
    return os.path.join(root, kind, f"{table_id}.json")


def spec_digest(spec_json: str) -> str:
    return hashlib.sha256(spec_json.encode("utf-8")).hexdigest()


def spec_paths(spec: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Input and output paths of a table spec, as written."""
    kind = KINDS[spec["kind"]]
    sources = [Source.parse(spec["features"]), *map(kind.source, spec[kind.sources])]
    return [p for s in sources for p in s.paths], [spec["out"], spec["audit_json"]]


def stamps(written_paths: list[str], base_dir: str) -> dict[str, list[int] | None]:
    """Size and mtime of each file (None when missing): cheap evidence of what a job saw."""
    found: dict[str, list[int] | None] = {}
    for written in written_paths:
        try:
            info = os.stat(paths.resolve(base_dir, written))
        except OSError:
            found[written] = None
        else:
            found[written] = [info.st_size, info.st_mtime_ns]
    return found


def write_status(path: str, payload: Mapping[str, Any]) -> None:
    """Write a status file atomically (a reader never sees half of one)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(dict(payload), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temp, target)


def read_status(path: str) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _join(spec: Mapping[str, Any], run: RunContext) -> dict[str, Any]:
    """Call the library join of the spec's kind with paths as written."""
    kind = KINDS[spec["kind"]]
    return kind.join_function()(
        spec["features"], list(spec[kind.sources]), spec["out"], audit_json=spec["audit_json"],
        options=kind.options.from_mapping(spec["options"]), run=run)


def _summary_line(spec: Mapping[str, Any], audit: Mapping[str, Any]) -> str:
    fields = KINDS[spec["kind"]].log_fields
    return "ok: " + " ".join(f"{name}={audit.get(name)}" for name in fields)


def remove_stale_temporaries(outputs: Sequence[str], base_dir: str) -> None:
    """Delete the temporary files a killed run left beside this table's outputs.

    Only ``.NAME.*.tmp``: the ``.NAME.previous`` sidecars stay. Safe here and only here:
    Snakemake's lock keeps any other writer of these outputs away while the job runs. The
    plain commands never do this (two may run at once).
    """
    prefixes: dict[Path, tuple[str, ...]] = {}  # one listing per folder (table + audit)
    for written in outputs:
        target = paths.resolve(base_dir, written)
        prefixes[target.parent] = (*prefixes.get(target.parent, ()), f".{target.name}.")
    for folder, wanted in prefixes.items():
        try:
            entries = list(os.scandir(folder))  # C speed: folders of 1,000s of tables
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(wanted) and entry.name.endswith(".tmp"):
                Path(entry.path).unlink(missing_ok=True)


def run_table(
    spec_json: str,
    *,
    base_dir: str,
    log: str,
    status: str,
    entrypoint: str,
    executor: str | None = None,
    extra_versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run one manifest table; returns its audit, or raises after recording the failure.

    ``spec_json`` is the job's params (options and paths as written); ``base_dir`` is the
    manifest's root of relative paths. Expected failures (:class:`MaterializeError`) are
    logged as one line; anything else with its traceback. Either way the status file says
    ``error`` with the one-line message and the exception propagates, so Snakemake marks
    the job failed.
    """
    spec = json.loads(spec_json)
    inputs, outputs = spec_paths(spec)
    use_jemalloc()
    Path(status).unlink(missing_ok=True)
    remove_stale_temporaries(outputs, base_dir)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        record: dict[str, Any] = {
            "id": spec["id"],
            "kind": spec["kind"],
            "spec_sha256": spec_digest(spec_json),
            "started_at": _now(),
            "inputs": stamps(inputs, base_dir),
        }
        kind = KINDS[spec["kind"]]
        named = ", ".join(str(kind.source(s)) for s in spec[kind.sources])
        _log(handle, f"{spec['kind']} table {spec['id']!r}: "
                     f"{Source.parse(spec['features']).path} + {named} -> {spec['out']}")
        _log(handle, f"base_dir {base_dir}; options {json.dumps(spec['options'], sort_keys=True)}")
        run = RunContext(
            entrypoint,
            argv=[str(a) for a in sys.argv[1:]],
            args=spec["options"],
            base_dir=base_dir,
            executor=executor,
            extra_versions=extra_versions,
            table_id=spec["id"],
        )
        try:
            with _progress_to(handle):
                audit = _join(spec, run)
        except MaterializeError as exc:
            exc.with_table(spec["id"])
            _fail(handle, status, record, str(exc))
            raise
        except Exception as exc:
            traceback.print_exc(file=handle)
            _fail(handle, status, record, f"{type(exc).__name__}: {' '.join(str(exc).split())}")
            raise
        record.update(status="ok", finished_at=_now(), outputs=stamps(outputs, base_dir))
        write_status(status, record)
        keep_previous(outputs, base_dir, handle)
        _log(handle, _summary_line(spec, audit))
    return audit


def previous_path(target: Path) -> Path:
    """The sidecar keeping an output's last good bytes: same folder, so same filesystem."""
    return target.with_name(f".{target.name}{PREVIOUS_SUFFIX}")


def keep_previous(outputs: Sequence[str], base_dir: str, log: TextIO) -> None:
    """Hard-link a finished table's outputs to their sidecars, replacing older ones.

    Links cost no copy, however large the table. The older sidecars go first, so a failure
    (or a kill) half-way never pairs a new table with an old audit; where links are not
    possible nothing is kept, and a failed rerun then loses the previous table.
    """
    targets = [paths.resolve(base_dir, written) for written in outputs]
    try:
        _drop_previous(targets)
        for target in targets:
            os.link(target, previous_path(target))
    except OSError as exc:
        with contextlib.suppress(OSError):
            _drop_previous(targets)
        _log(log, f"previous version not kept (needs hard links beside the outputs): "
                  f"{exc.strerror or exc}")


def _drop_previous(targets: Sequence[Path]) -> None:
    for target in targets:
        previous_path(target).unlink(missing_ok=True)


def restore_previous(outputs: Sequence[str], inputs: Sequence[str], base_dir: str) -> bool:
    """Put back a failed table's last good outputs, which Snakemake deleted; True if done.

    Only when every output is gone and every sidecar is a plain file, so a table and its
    audit always come back as a pair. The sidecars stay (a second failed rerun restores
    again). The restored files are dated before the newest input: without that a rerun
    that failed on changed options alone would look up to date next time.
    """
    targets = [paths.resolve(base_dir, written) for written in outputs]
    if any(os.path.lexists(t) for t in targets) or not all(
            _is_plain_file(previous_path(t)) for t in targets):
        return False
    linked: list[Path] = []
    try:
        for target in targets:
            os.link(previous_path(target), target)
            linked.append(target)
    except OSError:
        for target in linked:
            target.unlink(missing_ok=True)
        return False
    _date_before_inputs(targets, inputs, base_dir)
    return True


def _is_plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _date_before_inputs(targets: Sequence[Path], inputs: Sequence[str], base_dir: str) -> None:
    """Make each target one second older than the newest input, if it is not already."""
    seen = [info[1] for info in stamps(list(inputs), base_dir).values() if info is not None]
    if not seen:
        return
    before = max(seen) - 1_000_000_000
    for target in targets:
        info = target.stat()
        if info.st_mtime_ns > before:
            os.utime(target, ns=(info.st_atime_ns, before))


def restore_failed_tables(manifest: Manifest, status_root: str = STATUS_ROOT) -> list[Table]:
    """After a failed run, restore every table whose status says its current spec failed.

    Returns the tables restored: Snakemake recorded their outputs as the failed job's, and
    the workflow must make it forget that, or the next run would not rerun them.
    """
    restored = []
    for table in manifest.tables:
        status = read_status(status_path(table.kind, table.id, status_root))
        spec_json = table.spec_json()
        if status is None or status.get("status") != "error" \
                or status.get("spec_sha256") != spec_digest(spec_json):
            continue
        inputs, outputs = spec_paths(json.loads(spec_json))
        if restore_previous(outputs, inputs, manifest.base_dir):
            restored.append(table)
    return restored


class _ThisThread(logging.Filter):
    """Jobs run in threads of one process: each log file gets only its own job's lines."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


@contextlib.contextmanager
def _progress_to(handle: TextIO) -> Iterator[None]:
    """Send the library's progress lines (long streamed joins) to the job's log."""
    logger = logging.getLogger("materializer")
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(handle)
    handler.addFilter(_ThisThread())
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _fail(handle: TextIO, status: str, record: dict[str, Any], message: str) -> None:
    record.update(status="error", error=message, finished_at=_now())
    write_status(status, record)
    _log(handle, f"error: {message}")


def _log(handle: TextIO, line: str) -> None:
    handle.write(f"[{_now()}] {line}\n")
    handle.flush()
