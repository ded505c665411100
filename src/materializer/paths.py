"""The one rule that turns a path as written into the file it names.

The workflow (what Snakemake tracks), the joins (what they open), the audits (what they
hash) and ``materialize-verify`` (what it re-hashes) all call :func:`resolve`, so ``~``,
``..``, symlinked folders and absolute paths name the same file everywhere. Paths as
written are kept for provenance and source columns only.
"""

from __future__ import annotations

import os
from pathlib import Path


def resolve(base_dir: str | os.PathLike[str] | None, written: str | os.PathLike[str]) -> Path:
    """``~`` expanded, relative paths joined to ``base_dir`` (the working directory when
    None), then normalised as Snakemake normalises the paths it tracks."""
    expanded = os.path.expanduser(os.fspath(written))
    return Path(os.path.normpath(os.path.join(os.fspath(base_dir or "."), expanded)))
