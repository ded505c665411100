"""One small error hierarchy: what went wrong, and where (table id, file, column, key)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class MaterializeError(Exception):
    """An expected failure with a one-line, user-facing message.

    ``exit_code`` is what the command line exits with: 1 for bad data, 2 for bad usage.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        key: str | None = None,
        table_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.column = column
        self.key = key
        self.table_id = table_id

    def with_table(self, table_id: str) -> MaterializeError:
        """Return the same error, now naming the manifest table it happened in."""
        self.table_id = table_id
        return self

    def __str__(self) -> str:
        where = []
        if self.table_id is not None:
            where.append(f"table {self.table_id}")
        if self.file is not None:
            where.append(str(self.file))
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        text = " ".join(self.message.split())
        return f"{': '.join(where)}: {text}" if where else text


class DataError(MaterializeError):
    """The inputs are readable but their content is wrong (exit 1)."""


class UsageError(MaterializeError):
    """The request itself is wrong: a flag, an option value, a path (exit 2)."""

    exit_code = 2


@contextlib.contextmanager
def naming_table(table_id: str | None) -> Iterator[None]:
    """Add the manifest table id to any expected error raised inside."""
    try:
        yield
    except MaterializeError as exc:
        if table_id:
            exc.with_table(table_id)
        raise
