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
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from materializer.errors import DataError, UsageError
from materializer.provenance import CHUNK, sha256_file
from materializer.provenance import SCHEMA as PROVENANCE_SCHEMA

REPORT_SCHEMAS = ("mos-label-materializer-batch-v1", "second-opinion-materializer-batch-v1")
SCHEMA = "materializer-verify-v1"
STATUSES = ("ok", "changed", "missing", "unverifiable")
PROGRESS_BYTES = 256 << 20
"""Files at least this large report hashing progress on stderr (tests lower it)."""


@dataclass
class Document:
    """A report or audit that was read, and the folder its relative paths resolve against."""

    path: Path
    kind: str
    base_dir: Path
    body: dict[str, Any]


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
class Checked:
    """A cited file and what is on disk now."""

    cited: Cited
    status: str
    sha256: str | None = None
    size: int | None = None
    note: str | None = None


def read_document(path: Path, base_override: Path | None) -> Document:
    """Read a batch report or audit, or fail with a usage error saying why it is neither."""
    try:
        body = json.loads(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"cannot read: {exc.strerror}", file=str(path)) from None
    except ValueError as exc:
        raise UsageError(f"not a JSON document ({exc})", file=str(path)) from None
    block = body.get("run_provenance") if isinstance(body, dict) else None
    schema = body.get("schema") if isinstance(body, dict) else None
    if not isinstance(block, dict) or block.get("schema") != PROVENANCE_SCHEMA:
        raise UsageError(
            f"not a batch report ({', '.join(REPORT_SCHEMAS)}) or a single-table audit: "
            f"no {PROVENANCE_SCHEMA} run_provenance block", file=str(path))
    if schema in REPORT_SCHEMAS and not isinstance(body.get("tables"), list):
        raise UsageError(f"{schema} report without a tables list", file=str(path))
    recorded = block.get("base_dir")
    if base_override is None and not isinstance(recorded, str):
        raise UsageError("run_provenance has no base_dir; pass --base-dir", file=str(path))
    return Document(Path(os.path.abspath(path)), schema if schema in REPORT_SCHEMAS else "audit",
                    base_override or Path(recorded), body)


def descriptions(value: Any) -> Iterator[dict[str, Any] | str]:
    """Every file description in a provenance ``inputs``/``outputs`` value, in order."""
    if isinstance(value, dict) and not isinstance(value.get("path"), str):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from descriptions(item)
    elif isinstance(value, dict) or (isinstance(value, str) and value):
        yield value


def cite(description: dict[str, Any] | str, base_dir: Path) -> Cited:
    """What one description promises: a path and, for files, their sha256 and size."""
    if isinstance(description, str):
        return Cited(description, resolve(base_dir, description), None, None,
                     "recorded without a hash")
    written = description["path"]
    sha256 = description.get("sha256")
    note = None if sha256 else f"recorded as {description.get('kind', 'unhashed')}, no hash"
    return Cited(written, resolve(base_dir, written), sha256, description.get("size"), note)


def resolve(base_dir: Path, written: str) -> Path:
    """A path as written, resolved as when the document was written (absolute stays)."""
    return Path(os.path.normpath(base_dir / written))


class Verification:
    """Collects cited files from documents (deduplicated) and checks them, reading each once."""

    def __init__(self, base_override: Path | None, progress: TextIO) -> None:
        self.base_override = base_override
        self.progress = progress
        self.documents: list[Document] = []
        self.problems: list[str] = []
        self._cited: dict[tuple[Path, str | None], Cited] = {}
        self._hashes: dict[str, tuple[str, int]] = {}

    def add(self, document: Document) -> None:
        """Cite what the document's provenance describes and, for a report, its audits."""
        if any(known.path == document.path for known in self.documents):
            return
        self.documents.append(document)
        block = document.body["run_provenance"]
        itself = os.path.realpath(document.path)
        for section in ("inputs", "outputs"):
            for description in descriptions(block.get(section)):
                cited = cite(description, document.base_dir)
                if os.path.realpath(cited.resolved) != itself:
                    self._add_cited(cited, document)
        if document.kind == "audit":
            return
        for table in document.body["tables"]:
            audit = table.get("audit_json") if isinstance(table, dict) else None
            if isinstance(audit, str) and audit and table.get("status") != "error":
                self._follow(audit, document)

    def _follow(self, written: str, report: Document) -> None:
        resolved = resolve(report.base_dir, written)
        if not resolved.is_file():
            if not any(path == resolved for path, _ in self._cited):
                self._add_cited(Cited(written, resolved, None, None, required=True), report)
            return
        try:
            audit = read_document(resolved, self.base_override)
        except UsageError as exc:
            self.problems.append(f"cannot follow the audit cited by {report.path}: {exc}")
            return
        self.add(audit)

    def _add_cited(self, cited: Cited, document: Document) -> None:
        known = self._cited.setdefault((cited.resolved, cited.sha256), cited)
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
        if not cited.resolved.is_file():
            hashed = cited.sha256 is not None or cited.required
            return Checked(cited, "missing" if hashed else "unverifiable", note=cited.note)
        try:
            sha256, size = self._hash(cited.resolved)
        except OSError as exc:
            return Checked(cited, "missing", note=f"unreadable: {exc.strerror}")
        if cited.sha256 is None:
            return Checked(cited, "unverifiable", sha256, size, cited.note)
        return Checked(cited, "ok" if sha256 == cited.sha256 else "changed", sha256, size)

    def _hash(self, path: Path) -> tuple[str, int]:
        real = os.path.realpath(path)
        if real not in self._hashes:
            size = os.path.getsize(real)
            self._hashes[real] = (sha256_with_progress(real, size, self.progress), size)
        return self._hashes[real]


def sha256_with_progress(path: str, size: int, progress: TextIO) -> str:
    """sha256 of a file, streamed; files over ``PROGRESS_BYTES`` report each tenth done."""
    if size < PROGRESS_BYTES:
        return sha256_file(path)
    digest = hashlib.sha256()
    done = shown = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if (tenth := done * 10 // max(size, 1)) > shown:
                shown = tenth
                print(f"materialize-verify: hashing {display(Path(path))}: "
                      f"{done * 100 // max(size, 1)}% of {size / 2**20:,.1f} MiB",
                      file=progress, flush=True)
    return digest.hexdigest()


def display(path: Path) -> str:
    """A path as a user finds it: relative to the working folder when inside it."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


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
    return text


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
        if args.base_dir is not None and not args.base_dir.is_dir():
            raise UsageError("--base-dir is not a directory", file=str(args.base_dir))
        base = args.base_dir.resolve() if args.base_dir else None
        documents = [read_document(path, base) for path in args.documents]
    except UsageError as exc:
        print(f"materialize-verify: {exc}", file=sys.stderr)
        return exc.exit_code
    verification = Verification(base, sys.stderr)
    for document in documents:
        if not document.base_dir.is_dir():
            print(f"materialize-verify: {document.path}: recorded base_dir {document.base_dir} "
                  "does not exist here; pass --base-dir", file=sys.stderr)
        verification.add(document)
    results = verification.check()
    for problem in verification.problems:
        print(f"materialize-verify: {problem}", file=sys.stderr)
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
