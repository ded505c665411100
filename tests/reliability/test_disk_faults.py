"""Disk full and unwritable output folders, through the commands and `snakemake`.

The output folder is a 64 KiB tmpfs (the tests run as root in CI; they skip when mounting
is not permitted). A failed write must give one clear line naming the output, leave no
file behind (no temporary file either) and leave every input byte-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_command
from rel_support import SNAKEMAKE, run_snakemake, temp_files, tree, write_files

TMPFS_BYTES = 64 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE")


def mount_tmpfs(where: Path, *options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs",
                           str(where)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at tmp_path/full, unmounted afterwards."""
    where = tmp_path / "full"
    mount_tmpfs(where, f"size={TMPFS_BYTES}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "ro"
    mount_tmpfs(where, "size=64k", "ro")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def big_inputs(folder: Path, rows: int = 4000) -> None:
    """Features and labels whose joined output is several times larger than the tmpfs."""
    keys = [f"clip_{i:05d}_with_a_long_descriptive_name.mp4" for i in range(rows)]
    noise = np.random.default_rng(7).random((rows, 4))  # parquet cannot compress it away
    pd.DataFrame({"path": keys, "x": range(rows), **{f"f{i}": noise[:, i] for i in range(4)}}
                 ).to_csv(folder / "f.csv", index=False)
    pd.DataFrame({"path": keys, "mos": [1 + (i % 400) / 100 for i in range(rows)]}).to_csv(
        folder / "l.csv", index=False)
    (folder / "s.jsonl").write_text("".join(
        json.dumps({"competitor": "dover", "path": k, "score": i / 7}) + "\n"
        for i, k in enumerate(keys)))


def used_pages(folder: Path) -> int:
    stats = os.statvfs(folder)
    return (stats.f_blocks - stats.f_bfree) * stats.f_frsize // PAGE


def assert_one_line(stderr: str, *expected: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "json", "parquet-streamed"])
def test_disk_full_while_writing_the_table(tmp_path: Path, small_disk: Path, fmt: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if fmt == "parquet-streamed":  # the record-batch writer for tables larger than memory
        monkeypatch.setenv("MATERIALIZER_STREAM", "always")
        monkeypatch.setenv("MATERIALIZER_BATCH_ROWS", "500")
        fmt = "parquet"
    big_inputs(tmp_path)
    features = "f.csv"
    if os.environ.get("MATERIALIZER_STREAM") == "always":
        features = "f.parquet"
        pd.read_csv(tmp_path / "f.csv").to_parquet(tmp_path / features, index=False)
    before = tree(tmp_path)
    done = run_command("materialize-mos-labels", "--features", features, "--labels", "l.csv",
                       "--out", f"full/new/o.{fmt}", "--audit-json", "full/o.audit.json",
                       cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line(done.stderr, f"full/new/o.{fmt}", "cannot write output",
                    "No space left on device")
    assert list(small_disk.iterdir()) == []  # no table, audit, temporary file or new folder
    assert tree(tmp_path) == before
    assert used_pages(small_disk) == 0


def test_disk_full_while_writing_the_audit_leaves_no_table(tmp_path: Path,
                                                           small_disk: Path) -> None:
    """The table fits, its audit does not: neither may be published."""
    big_inputs(tmp_path, rows=300)
    args = ["--features", "f.csv", "--labels", "l.csv", "--out", "full/o.csv",
            "--audit-json", "full/o.audit.json"]
    assert run_command("materialize-mos-labels", *args, cwd=tmp_path).returncode == 0
    table_pages = -(-(small_disk / "o.csv").stat().st_size // PAGE)
    for name in ("o.csv", "o.audit.json"):
        (small_disk / name).unlink()
    free_pages = TMPFS_BYTES // PAGE - used_pages(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (free_pages - table_pages) * PAGE)
    before = tree(tmp_path)
    done = run_command("materialize-mos-labels", *args, cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line(done.stderr, "full/o.audit.json", "No space left on device")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]
    assert tree(tmp_path) == before


def test_disk_full_second_opinion(tmp_path: Path, small_disk: Path) -> None:
    big_inputs(tmp_path)
    before = tree(tmp_path)
    done = run_command("materialize-second-opinion-features", "--features", "f.csv",
                       "--scores", "s.jsonl", "--out", "full/o.jsonl", "--audit-json",
                       "full/a.json", cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line(done.stderr, "full/o.jsonl", "No space left on device")
    assert list(small_disk.iterdir()) == []
    assert tree(tmp_path) == before


def test_existing_output_survives_a_failed_rewrite(tmp_path: Path, small_disk: Path) -> None:
    """A rerun that runs out of space keeps the previous complete output as it was."""
    big_inputs(tmp_path, rows=200)
    args = ["--features", "f.csv", "--labels", "l.csv", "--out", "full/o.csv",
            "--audit-json", "full/o.audit.json"]
    assert run_command("materialize-mos-labels", *args, cwd=tmp_path).returncode == 0
    published = tree(small_disk)
    free_pages = TMPFS_BYTES // PAGE - used_pages(small_disk)
    (small_disk / "filler").write_bytes(b"\0" * (free_pages - 1) * PAGE)
    done = run_command("materialize-mos-labels", *args, "--overwrite", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert_one_line(done.stderr, "No space left on device")
    after = tree(small_disk)
    after.pop("filler")
    assert after == published


@pytest.mark.parametrize("out", ["blocker/o.csv", "blocker/deeper/o.csv"])
def test_output_folder_under_a_regular_file(tmp_path: Path, out: str) -> None:
    big_inputs(tmp_path, rows=10)
    (tmp_path / "blocker").write_text("I am a file\n")
    before = tree(tmp_path)
    done = run_command("materialize-mos-labels", "--features", "f.csv", "--labels", "l.csv",
                       "--out", out, "--audit-json", "a.json", cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line(done.stderr, out, "cannot create output", "blocker is a file, not a folder")
    assert tree(tmp_path) == before and temp_files(tmp_path) == []


def test_audit_folder_cannot_be_created_leaves_no_table(tmp_path: Path) -> None:
    big_inputs(tmp_path, rows=10)
    (tmp_path / "blocker").write_text("I am a file\n")
    before = tree(tmp_path)
    done = run_command("materialize-mos-labels", "--features", "f.csv", "--labels", "l.csv",
                       "--out", "out/o.parquet", "--audit-json", "blocker/a.json",
                       cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line(done.stderr, "blocker/a.json", "cannot create output")
    assert tree(tmp_path) == before and temp_files(tmp_path) == []


def test_read_only_output_folder(tmp_path: Path, read_only_disk: Path) -> None:
    big_inputs(tmp_path, rows=10)
    before = tree(tmp_path)
    done = run_command("materialize-second-opinion-features", "--features", "f.csv",
                       "--scores", "s.jsonl", "--out", "ro/sub/o.csv", cwd=tmp_path)
    assert done.returncode == 1
    assert_one_line(done.stderr, "ro/sub/o.csv", "cannot create output", "Read-only")
    assert tree(tmp_path) == before and list(read_only_disk.iterdir()) == []


@pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed")
def test_workflow_disk_full_reports_the_table_and_keeps_the_others(tmp_path: Path,
                                                                   small_disk: Path) -> None:
    big_inputs(tmp_path)
    # Not empty: after a failure Snakemake removes empty output folders and crashes with
    # EBUSY when one is a mount point (before the report is written).
    (small_disk / "README").write_text("scratch space\n")
    write_files(tmp_path, {"manifest.yaml": (
        "mos_labels:\n  tables:\n"
        "    - {id: big, features: f.csv, labels: [l.csv], out: full/big.csv}\n"
        "    - {id: fine, features: f.csv, labels: [l.csv], out: out/fine.parquet}\n")})
    before = tree(tmp_path)
    done = run_snakemake(tmp_path, "-c", "1")
    assert done.returncode != 0
    assert [p.name for p in small_disk.iterdir()] == ["README"]
    assert (tmp_path / "out" / "fine.parquet").exists()  # keep-going: the other table ran
    report = json.loads((tmp_path / "reports" / "manifest" / "mos-labels.json").read_text())
    assert report["status"] == "failed"
    by_id = {t["id"]: t for t in report["tables"]}
    assert by_id["fine"]["status"] == "ok" and by_id["big"]["status"] == "error"
    assert "No space left on device" in by_id["big"]["error"]
    assert "full/big.csv" in by_id["big"]["error"] and "big" in by_id["big"]["error"]
    assert "\n" not in by_id["big"]["error"]
    for name, content in before.items():
        assert (tmp_path / name).read_bytes() == content
    assert temp_files(tmp_path) == []


def test_published_outputs_get_the_umask_permissions(tmp_path: Path) -> None:
    """Not the 0600 of a private temporary file: others sharing the folder can read them."""
    big_inputs(tmp_path, rows=10)
    done = run_command("materialize-mos-labels", "--features", "f.csv", "--labels", "l.csv",
                       "--out", "out/o.parquet", "--audit-json", "out/a.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    umask = os.umask(0)
    os.umask(umask)
    for name in ("o.parquet", "a.json"):
        assert (tmp_path / "out" / name).stat().st_mode & 0o777 == 0o666 & ~umask
