"""Files on disk: table formats by extension, and atomic writes.

An output is written to a temporary file beside its target and renamed into place only
when complete, so a reader never sees half of one and a failure leaves nothing behind.
Nothing here imports pandas or pyarrow: manifests are planned without them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from materializer.errors import DataError, UsageError

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
SUPPORTED = "parquet, pq, csv, jsonl, ndjson or json"


def table_format(path: str | os.PathLike[str]) -> str:
    """The format of a table path by its extension; refuses unknown ones before any read."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"unsupported table format {suffix or '(none)'!r}; use {SUPPORTED}",
                         file=os.fspath(path))
    return FORMATS[suffix]



@contextlib.contextmanager
def atomic_output(target: Path, written: str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; the caller renames it with ``commit``.

    The temporary file is removed on any failure, so nothing partial is left behind.
    """
    created = _missing_folders(target.parent)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = _new_temp_file(target)
    except OSError as exc:
        _remove_folders(created)
        blocker = next((p for p in (target.parent, *target.parent.parents)
                        if p.exists() and not p.is_dir()), None)
        reason = f"{blocker} is a file, not a folder" if blocker else exc.strerror or exc
        raise DataError(f"cannot create output: {reason}", file=written) from None
    try:
        yield temp
    except OSError as exc:
        temp.unlink(missing_ok=True)
        _remove_folders(created)
        raise DataError(f"cannot write output: {exc.strerror or exc}", file=written) from None
    except BaseException as exc:
        temp.unlink(missing_ok=True)
        _remove_folders(created)
        if isinstance(exc, DataError) and exc.file is None:
            exc.file = written  # a problem found while writing names the output
        raise


def _new_temp_file(target: Path) -> Path:
    """A new empty ``.NAME.<random>.tmp`` beside ``target``, with the umask's permissions.

    (``tempfile.mkstemp`` creates mode 0600, which the rename would carry over to the
    published table: other users of a shared folder could not read it.)
    """
    while True:
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp


def _missing_folders(folder: Path) -> list[Path]:
    """The folders that creating ``folder`` would create, deepest first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    return missing


def _remove_folders(folders: list[Path]) -> None:
    """Remove folders a failed write created (deepest first), if they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def write_json_document(payload: Any, target: Path) -> None:
    """Write sorted, indented JSON with a trailing newline (audits and reports)."""
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")


def commit_outputs(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Rename finished temporary files into place: all of them, or none.

    A target that is a folder is refused before anything moves. If a rename fails after
    others succeeded, those are undone: a target that existed gets its previous bytes
    back (kept through a hard link while the commit runs), a new one is removed.
    """
    with _commit_lock({target.parent for _, target in pairs}):
        for _, target in pairs:
            if target.is_dir():
                raise DataError("is an existing folder; cannot publish here", file=str(target))
        _rename_all(pairs)


def _rename_all(pairs: Sequence[tuple[Path, Path]]) -> None:
    """``os.replace`` each pair in order, undoing the earlier ones if one fails."""
    done: list[tuple[Path, Path | None]] = []
    try:
        for temp, target in pairs:
            previous = _keep_previous(target)
            done.append((target, previous))
            os.replace(temp, target)
    except OSError as exc:
        for target, previous in reversed(done[:-1]):
            if previous is not None:
                os.replace(previous, target)
            else:
                target.unlink(missing_ok=True)
        raise DataError(f"cannot publish: {exc.strerror or exc}", file=str(done[-1][0])) \
            from None
    finally:
        for _, previous in done:
            if previous is not None:
                previous.unlink(missing_ok=True)


@contextlib.contextmanager
def _commit_lock(folders: set[Path]) -> Iterator[None]:
    """Hold an exclusive lock on each target folder while a table and its audit move.

    Two runs publishing the same table at once would otherwise interleave their renames
    and leave one run's audit beside the other run's table. Folders are locked in sorted
    order (no deadlock); where a file system has no locks, the commit goes on unlocked.
    """
    handles = []
    try:
        for folder in sorted(folders):
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue
            handles.append(fd)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in handles:
            os.close(fd)  # closing releases the lock


def _keep_previous(target: Path) -> Path | None:
    """A hard link to ``target``'s current bytes (None when it does not exist or links
    are unsupported: then a failed commit cannot restore it, only remove the new one)."""
    if not target.is_file():
        return None
    keep = target.with_name(f".{target.name}.{secrets.token_hex(4)}.previous.tmp")
    try:
        os.link(target, keep)
    except OSError:
        return None
    return keep


def fsync_file(path: Path) -> None:
    """Flush a finished file to disk before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

