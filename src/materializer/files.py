"""Files on disk: table formats by extension, and atomic writes.

An output is written to a temporary file beside its target and renamed into place only
when complete, so a reader never sees half of one and a failure leaves nothing behind.
Nothing here imports pandas or pyarrow: manifests are planned without them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import secrets
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


class WriteBehind(io.RawIOBase):
    """A new file written, hashed and flushed to disk by a thread behind its writer.

    The sha256 an audit cites and the flush before the rename each cost about a second
    per gigabyte on the project's machine; made after the table was written they added
    a fifth to a 10M-row join. Here the writer only hands its bytes over, a megabyte at
    a time: a thread writes them in order, hashes them, and flushes every 256 MiB, so
    ``finish`` has only the tail left. An error in the thread (a full disk, say) is
    raised by the next ``write`` or by ``finish``.
    """

    HAND_OVER = 1 << 20
    SYNC_EVERY = 256 << 20
    QUEUED = 8  # hand-overs in flight at most: memory stays a few megabytes

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-behind")
        self._queued: deque[Future[None]] = deque()
        self._digest = hashlib.sha256()
        self._parts: list[bytes] = []
        self._held = self._size = self._unsynced = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._size

    def write(self, data: Any) -> int:
        part = bytes(data)  # pyarrow hands over bytes (kept as they are); others a view
        self._parts.append(part)
        self._held += len(part)
        self._size += len(part)
        if self._held >= self.HAND_OVER or len(self._parts) >= 512:  # writev takes 1,024
            self._hand_over()
        return len(part)

    def _hand_over(self) -> None:
        while self._queued and (len(self._queued) >= self.QUEUED or self._queued[0].done()):
            self._queued.popleft().result()
        self._queued.append(self._thread.submit(self._store, self._parts))
        self._parts, self._held = [], 0

    def _store(self, parts: list[bytes]) -> None:
        total = sum(map(len, parts))
        done = os.writev(self._fd, parts)
        if done < total:  # a short write: the rest one call at a time
            rest = memoryview(b"".join(parts))[done:]
            while rest:
                rest = rest[os.write(self._fd, rest):]
        for part in parts:
            self._digest.update(part)
        self._unsynced += total
        if self._unsynced >= self.SYNC_EVERY:
            os.fdatasync(self._fd)
            self._unsynced = 0

    def flush(self) -> None:
        """Wait until every byte handed over is written."""
        if self._parts:
            self._hand_over()
        while self._queued:
            self._queued.popleft().result()

    def finish(self) -> str:
        """Write everything, flush the file to disk; the sha256 of its bytes."""
        self.flush()
        os.fsync(self._fd)
        return self._digest.hexdigest()

    def close(self) -> None:
        if not self.closed:  # on success or failure: what is not written is dropped
            self._thread.shutdown(wait=True, cancel_futures=True)
            self._queued.clear()
            self._parts = []
            os.close(self._fd)
        super().close()


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

