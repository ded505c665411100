"""``materialize-verify``: check that the files a report or audit cites still hold their bytes.

A batch report (``*-materializer-batch-v1``) or a single-table audit carries a
``run_provenance`` block describing every input and output with its sha256. Weeks later,
after copies and re-extractions, a trainer citing the report can re-hash those files here.
For a report the audit of each table is followed too. Every file is read once, however
many documents cite it. Exit 0: every hashed file matches; 1: a file changed or is missing
(or a cited audit cannot be read); 2: bad usage, or a document that is not a report/audit.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from materializer import paths
from materializer.errors import DataError, UsageError
from materializer.kinds import BY_REPORT_SCHEMA
from materializer.provenance import CHUNK
from materializer.provenance import SCHEMA as PROVENANCE_SCHEMA

REPORT_SCHEMAS = tuple(BY_REPORT_SCHEMA)
SCHEMA = "materializer-verify-v1"
STATUSES = ("ok", "changed", "missing", "unverifiable")
PROGRESS_BYTES = 256 << 20
"""Files at least this large report hashing progress on stderr (tests lower it)."""
MAX_DOCUMENT_BYTES = 64 << 20
"""A larger report or audit is refused rather than read into memory."""
MAX_DEPTH = 32
"""Provenance ``inputs``/``outputs`` nested deeper are refused (real ones nest 4 levels)."""
DESCRIPTION_FIELDS = ("path", "exists", "kind", "size", "sha256")
FILE_FIELDS = ("path", "size", "sha256")
"""What a description of ``kind: file`` must carry: without a hash it could not be checked."""
MISSING = object()
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
FILE_TYPES = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
              stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def is_path(value: Any) -> bool:
    """A non-empty string the file system can name (no NUL, no unpaired surrogate)."""
    if not isinstance(value, str) or not value or "\0" in value:
        return False
    try:
        os.fsencode(value)
    except UnicodeEncodeError:
        return False
    return True


RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "object": (lambda v: isinstance(v, dict), "an object"),
    "path": (is_path, "a non-empty path string"),
    "exists": (lambda v: isinstance(v, bool), "true or false"),
    "kind": (lambda v: isinstance(v, str), "a string"),
    "size": (lambda v: type(v) is int and v >= 0, "a non-negative integer"),
    "sha256": (lambda v: isinstance(v, str) and HEX64.fullmatch(v) is not None,
               "a 64-character hex string"),
    "entry": (lambda v: False, "a file description or a path"),
    "shallow": (lambda v: False, f"nested at most {MAX_DEPTH} levels deep"),
}
"""Each rule a field must meet, and how the error message states it."""


@dataclass
class Cited:
    """One file as the documents describe it; ``required`` files must exist even unhashed."""

    written: str
    resolved: Path
    sha256: str | None
    size: int | None
    note: str | None = None
    required: bool = False
    cited_by: list[str] = field(default_factory=list)


@dataclass
class Document:
    """A report or audit that was read, the folder its paths resolve against, what it cites."""

    path: Path
    kind: str
    base_dir: Path
    body: dict[str, Any]
    cited: list[Cited]


@dataclass
class Checked:
    """A cited file and what is on disk now."""

    cited: Cited
    status: str
    sha256: str | None = None
    size: int | None = None
    note: str | None = None


class NotRegularFile(OSError):
    """A path that exists but is not a regular file: a FIFO or device is never read."""


def open_regular(path: str | Path) -> int:
    """A descriptor on a regular file; anything else is refused before and after opening.

    The second check, on the open descriptor, catches a file swapped for a FIFO in between;
    ``O_NONBLOCK`` keeps that open from waiting for a writer.
    """
    require_regular(os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        require_regular(os.fstat(fd).st_mode)
    except NotRegularFile:
        os.close(fd)
        raise
    return fd


def require_regular(mode: int) -> None:
    """Refuse a file type whose reading could block or never end (FIFO, device) or fail."""
    if not stat.S_ISREG(mode):
        kind = FILE_TYPES.get(stat.S_IFMT(mode), "a special file")
        raise NotRegularFile(errno.EINVAL, f"{kind}, not a regular file")


def read_document(path: Path, base_override: Path | None) -> Document:
    """Read a batch report or audit whose shape can be trusted, or fail saying why not.

    Everything is checked before any file is hashed, so a hand-edited document fails on
    its own terms (exit 2, naming the field) rather than halfway through the run.
    """
    body = load_json(path)
    block = body.get("run_provenance") if isinstance(body, dict) else None
    schema = body.get("schema") if isinstance(body, dict) else None
    if not isinstance(block, dict) or block.get("schema") != PROVENANCE_SCHEMA:
        raise UsageError(
            f"not a batch report ({', '.join(REPORT_SCHEMAS)}) or a single-table audit: "
            f"no {PROVENANCE_SCHEMA} run_provenance block", file=str(path))
    if schema in REPORT_SCHEMAS and not isinstance(body.get("tables"), list):
        raise UsageError(f"{schema} report without a tables list", file=str(path))
    if base_override is None and "base_dir" not in block:
        raise UsageError("run_provenance has no base_dir; pass --base-dir", file=str(path))
    kind = schema if schema in REPORT_SCHEMAS else "audit"
    if (problem := shape_error(body, kind)) is not None:
        raise UsageError(problem, file=str(path))
    base_dir = base_override or Path(block["base_dir"])
    cited = citations(block, absolute(path), base_dir)
    if (problem := citation_error(cited)) is not None:
        raise UsageError(problem, file=str(path))
    return Document(absolute(path), kind, base_dir, body, [file for _, file in cited])


def load_json(path: Path) -> Any:
    """Parse a document that is a regular file of at most ``MAX_DOCUMENT_BYTES``."""
    try:
        with open(open_regular(path), "rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror}", file=str(path)) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UsageError(f"larger than {MAX_DOCUMENT_BYTES >> 20} MiB, too large for a "
                         "report or audit", file=str(path))
    try:
        return json.loads(data)
    except RecursionError:
        raise UsageError("not a JSON document (nested too deeply)", file=str(path)) from None
    except ValueError as exc:
        raise UsageError(f"not a JSON document ({exc})", file=str(path)) from None


def shape_error(body: dict[str, Any], kind: str) -> str | None:
    """The first field verify relies on that breaks its rule, as ``field: must be ...``."""
    for name, value, rule in document_fields(body, kind):
        test, wanted = RULES[rule]
        if not test(value):
            return f"{name}: must be {wanted}, got {shown(value)}"
    return None


def document_fields(body: dict[str, Any], kind: str) -> Iterator[tuple[str, Any, str]]:
    """Every field verify relies on, with the rule it must meet, in document order.

    Consumed lazily by ``shape_error``: a container is only looked into once it has passed
    its own rule, so nothing here needs to check a type twice.
    """
    block = body["run_provenance"]
    if "base_dir" in block:
        yield "run_provenance.base_dir", block["base_dir"], "path"
    for section in ("inputs", "outputs"):
        name = f"run_provenance.{section}"
        yield name, block.get(section, MISSING), "object"
        for leaf_name, leaf in leaves(block[section], name):
            yield from leaf_fields(leaf_name, leaf)
    if kind == "audit":
        return
    for index, table in enumerate(body["tables"]):
        yield f"tables[{index}]", table, "object"
        if "audit_json" in table:
            yield f"tables[{index}].audit_json", table["audit_json"], "path"


def leaves(value: Any, name: str, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """Every description, path or stray value under ``inputs``/``outputs``, named by field.

    Groups (objects and lists) are opened up to ``MAX_DEPTH`` levels; deeper ones come out
    as leaves, which ``leaf_fields`` refuses.
    """
    if depth < MAX_DEPTH and isinstance(value, list):
        for index, member in enumerate(value):
            yield from leaves(member, f"{name}[{index}]", depth + 1)
    elif depth < MAX_DEPTH and isinstance(value, dict) and not is_description(value):
        for key, member in value.items():
            yield from leaves(member, name + segment(key), depth + 1)
    else:
        yield name, value


def is_description(value: Any) -> bool:
    """A file description, told from a group (which may be keyed by a table id such as
    ``path``) by a description field that does not hold an object."""
    return isinstance(value, dict) and any(
        key in value and not isinstance(value[key], dict) for key in DESCRIPTION_FIELDS)


def leaf_fields(name: str, leaf: Any) -> Iterator[tuple[str, Any, str]]:
    """The fields of one leaf with their rules; ``None`` means not recorded and cites nothing."""
    if is_description(leaf):
        required = FILE_FIELDS if leaf.get("kind") == "file" else ("path",)
        for key in DESCRIPTION_FIELDS:
            if key in leaf or key in required:
                yield f"{name}.{key}", leaf.get(key, MISSING), key
    elif isinstance(leaf, list | dict):
        yield name, leaf, "shallow"
    elif leaf is not None:
        yield name, leaf, "path" if isinstance(leaf, str) else "entry"


def segment(key: str) -> str:
    """``.key`` for a plain member name, else ``["key"]``, so no name can break the line."""
    return f".{key}" if re.fullmatch(r"[A-Za-z0-9_-]+", key) else f"[{json.dumps(key)}]"


def shown(value: Any) -> str:
    """A value as an error message quotes it: short, JSON, on one line."""
    if value is MISSING:
        return "nothing"
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:56]}..."


def citations(block: dict[str, Any], path: Path, base_dir: Path) -> list[tuple[str, Cited]]:
    """The files a sound provenance block cites, by field; the document at ``path`` is left
    out (it cannot vouch for its own bytes: an audit names itself among its outputs)."""
    itself = os.path.realpath(path)
    found = []
    for section in ("inputs", "outputs"):
        for name, leaf in leaves(block[section], f"run_provenance.{section}"):
            if leaf is None:
                continue
            cited = cite(leaf, base_dir)
            if os.path.realpath(cited.resolved) != itself:
                found.append((name, cited))
    return found


def citation_error(cited: list[tuple[str, Cited]]) -> str | None:
    """Why a document's citations prove nothing: none at all, or one file, two hashes."""
    if not cited:
        return "run_provenance.inputs and outputs: cite no file to verify"
    hashed: dict[Path, tuple[str, str]] = {}
    for name, file in cited:
        if file.sha256 is None:
            continue
        first, sha256 = hashed.setdefault(file.resolved, (name, file.sha256))
        if sha256 != file.sha256:
            return (f"{name}.sha256: differs from {first}.sha256 for the same file "
                    f"{json.dumps(file.written)}")
    return None


def cite(description: dict[str, Any] | str, base_dir: Path) -> Cited:
    """What one description promises: a path and, for files, their sha256 and size."""
    if isinstance(description, str):
        return Cited(description, resolve(base_dir, description), None, None,
                     "recorded without a hash")
    written = description["path"]
    sha256 = description.get("sha256")
    note = None if sha256 else f"recorded as {description.get('kind', 'unhashed')}, no hash"
    return Cited(written, resolve(base_dir, written), sha256 and sha256.lower(),
                 description.get("size"), note)


def resolve(base_dir: Path, written: str) -> Path:
    """A path as written, resolved by the one rule the command and Snakemake used."""
    return paths.resolve(base_dir, written)


def absolute(path: Path) -> Path:
    """``path`` from the working folder, ``..`` kept for the file system to resolve."""
    return Path.cwd() / path


class Verification:
    """Collects cited files from documents (deduplicated) and checks them, reading each once."""

    def __init__(self, base_override: Path | None, progress: TextIO) -> None:
        self.base_override = base_override
        self.progress = progress
        self.documents: list[Document] = []
        self.problems: list[str] = []
        self._cited: dict[tuple[Path, str | None], Cited] = {}
        self._paths: set[Path] = set()
        self._read: set[Path] = set()
        self._followed: set[Path] = set()
        self._hashes: dict[str, tuple[str, int]] = {}

    def add(self, document: Document) -> None:
        """Cite what the document's provenance describes and, for a report, its audits."""
        if document.path in self._read:
            return
        self._read.add(document.path)
        self.documents.append(document)
        for cited in document.cited:
            self._add_cited(cited, document)
        if document.kind == "audit":
            return
        for table in document.body["tables"]:
            if "audit_json" in table and table.get("status") != "error":
                self._follow(table["audit_json"], document)

    def _follow(self, written: str, report: Document) -> None:
        """Add a table's audit; each is read once, however many tables cite it (sets keep
        a batch of thousands of tables linear)."""
        resolved = resolve(report.base_dir, written)
        if not os.path.isfile(resolved):
            if resolved not in self._paths:
                self._add_cited(Cited(written, resolved, None, None, required=True), report)
            return
        if resolved in self._followed:
            return
        self._followed.add(resolved)
        try:
            audit = read_audit(resolved, self.base_override)
        except UsageError as exc:
            self.problems.append(f"cannot follow the audit cited by {report.path}: {exc}")
            return
        self.add(audit)

    def _add_cited(self, cited: Cited, document: Document) -> None:
        known = self._cited.setdefault((cited.resolved, cited.sha256), cited)
        self._paths.add(cited.resolved)
        if str(document.path) not in known.cited_by:
            known.cited_by.append(str(document.path))

    def check(self) -> list[Checked]:
        """Re-hash every cited file; a file cited twice with one hash yields one line.

        A path named without a hash is left out when another document hashed it.
        """
        hashed = {path for path, sha256 in self._cited if sha256 is not None}
        return [self._check(cited) for (path, sha256), cited in self._cited.items()
                if sha256 is not None or path not in hashed]

    def _check(self, cited: Cited) -> Checked:
        try:
            sha256, size = self._hash(cited.resolved)
        except OSError as exc:
            if cited.sha256 is None and not cited.required:
                return Checked(cited, "unverifiable", note=cited.note)
            return Checked(cited, "missing", note=missing_note(exc))
        if cited.sha256 is None:
            return Checked(cited, "unverifiable", sha256, size, cited.note)
        return Checked(cited, "ok" if sha256 == cited.sha256 else "changed", sha256, size)

    def _hash(self, path: Path) -> tuple[str, int]:
        real = os.path.realpath(path)
        if real not in self._hashes:
            self._hashes[real] = hash_regular(real, self.progress)
        return self._hashes[real]


def read_audit(path: Path, base_override: Path | None) -> Document:
    """The audit a report's table cites; a report there (the report itself, say) is refused."""
    document = read_document(path, base_override)
    if document.kind != "audit":
        raise UsageError(f"a {document.kind} report, not a single-table audit", file=str(path))
    return document


def missing_note(exc: OSError) -> str | None:
    """Why a cited file could not be hashed; nothing to add when it is simply gone."""
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return None
    if isinstance(exc, NotRegularFile):
        return exc.strerror
    return f"unreadable: {exc.strerror}"


def hash_regular(path: str, progress: TextIO) -> tuple[str, int]:
    """sha256 and size of a regular file, streamed; files over ``PROGRESS_BYTES`` report
    each tenth done. A FIFO or device in its place is refused, never read."""
    digest = hashlib.sha256()
    with open(open_regular(path), "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        done = reported = 0
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if size >= PROGRESS_BYTES and (tenth := done * 10 // max(size, 1)) > reported:
                reported = tenth
                print(printable(f"materialize-verify: hashing {display(Path(path))}: "
                                f"{done * 100 // max(size, 1)}% of {size / 2**20:,.1f} MiB"),
                      file=progress, flush=True)
    return digest.hexdigest(), size


def display(path: Path) -> str:
    """A path as a user finds it: relative to the working folder when inside it."""
    try:
        return str(absolute(path).relative_to(Path.cwd()))
    except ValueError:
        return str(absolute(path))


def printable(text: str) -> str:
    """Text that prints as one line in any encoding: control characters and undecodable
    bytes of a file name are escaped as JSON escapes them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def line(checked: Checked) -> str:
    """One line of text output: status, file, and what differs."""
    text = f"{checked.status:<13} {display(checked.cited.resolved)}"
    if checked.status == "changed":
        old, new = checked.cited.sha256 or "", checked.sha256 or ""
        text += (f"  sha256 {old[:12]} -> {new[:12]}, "
                 f"size {checked.cited.size if checked.cited.size is not None else '?'}"
                 f" -> {checked.size} bytes")
    elif checked.note:
        text += f"  ({checked.note})"
    return printable(text)


def as_json(verification: Verification, results: list[Checked]) -> dict[str, Any]:
    """The machine-readable result: documents checked, a summary and one entry per file."""
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    return {
        "documents": [{"base_dir": str(d.base_dir), "kind": d.kind, "path": str(d.path)}
                      for d in verification.documents],
        "files": [{
            "actual": None if r.sha256 is None else {"sha256": r.sha256, "size": r.size},
            "cited_by": r.cited.cited_by,
            "note": r.note,
            "path": r.cited.written,
            "recorded": None if r.cited.sha256 is None
            else {"sha256": r.cited.sha256, "size": r.cited.size},
            "resolved": str(r.cited.resolved),
            "status": r.status,
        } for r in results],
        "problems": verification.problems,
        "schema": SCHEMA,
        "status": "ok" if exit_code(verification, results) == 0 else "failed",
        "summary": counts,
    }


def exit_code(verification: Verification, results: list[Checked]) -> int:
    """1 when a hashed file changed or is missing, or a cited audit could not be read."""
    failed = verification.problems or any(r.status in ("changed", "missing") for r in results)
    return 1 if failed else 0


def warn(message: str) -> None:
    """One line on stderr, whatever the message quotes."""
    print(printable(f"materialize-verify: {message}"), file=sys.stderr)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="materialize-verify",
        description="Re-hash every file a batch report or single-table audit cites.",
    )
    parser.add_argument("documents", nargs="+", type=Path, metavar="REPORT_OR_AUDIT")
    parser.add_argument("--base-dir", type=Path,
                        help="resolve relative paths here instead of the recorded base_dir")
    parser.add_argument("--json", action="store_true", help="print a JSON document")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        if args.base_dir is not None and not os.path.isdir(args.base_dir):
            raise UsageError("--base-dir is not a directory", file=str(args.base_dir))
        base = args.base_dir.resolve() if args.base_dir else None
        documents = [read_document(path, base) for path in args.documents]
    except UsageError as exc:
        warn(str(exc))
        return exc.exit_code
    verification = Verification(base, sys.stderr)
    for document in documents:
        if not os.path.isdir(document.base_dir):
            warn(f"{document.path}: recorded base_dir {document.base_dir} "
                 "does not exist here; pass --base-dir")
        verification.add(document)
    results = verification.check()
    for problem in verification.problems:
        warn(problem)
    if args.json:
        json.dump(as_json(verification, results), sys.stdout, indent=2, sort_keys=True)
        print()
    else:
        for checked in results:
            print(line(checked))
        counts = ", ".join(f"{sum(r.status == s for r in results)} {s}" for s in STATUSES)
        files = f"{len(results)} file{'' if len(results) == 1 else 's'}"
        print(f"materialize-verify: {files}: {counts}", file=sys.stderr)
    return exit_code(verification, results)


def check_reports(reports: Sequence[str], log: str) -> None:
    """``snakemake verify``: one line per file into ``log``, the summary on stderr.

    Raises a data error when the check fails (a file changed or is missing, or a report
    cannot be read), so the rule and the run fail.
    """
    with open(log, "w") as handle, contextlib.redirect_stdout(handle):
        code = main(["--", *reports])
    if code:
        raise DataError(f"materialize-verify failed (exit {code}): see {log}")


if __name__ == "__main__":
    sys.exit(main())
