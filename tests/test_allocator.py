"""A join process takes Arrow's buffers from jemalloc, unless the user names a pool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from conftest import TEST_DATA

# The command's main, then the pool Arrow allocated from, on stdout.
RUN_AND_SAY_POOL = (
    "import sys, pyarrow as pa; from materializer.cli import mos_labels_main; "
    "code = mos_labels_main(sys.argv[1:]); print(pa.default_memory_pool().backend_name); "
    "sys.exit(code)"
)
# The command as its console script runs it: pyarrow not yet loaded.
RUN = "import sys; from materializer.cli import mos_labels_main; sys.exit(mos_labels_main())"


def _has_jemalloc() -> bool:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True


def _join(tmp_path: Path, out: str, pool: str | None, conf: str | None = None,
          script: str = RUN_AND_SAY_POOL) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ARROW_DEFAULT_MEMORY_POOL", "JE_ARROW_MALLOC_CONF")}
    env |= {"MATERIALIZER_STREAM": "always", "MATERIALIZER_BATCH_ROWS": "100"}
    if pool:
        env["ARROW_DEFAULT_MEMORY_POOL"] = pool
    if conf:
        env["JE_ARROW_MALLOC_CONF"] = conf
    done = subprocess.run(
        [sys.executable, "-c", script, "--features", "f.parquet",
         "--labels", str(TEST_DATA / "KONVID_1K_metadata.csv"), "--out", out,
         "--audit-json", out + ".json", "--feature-key-column", "path",
         "--label-key-column", "flickr_id", "--feature-key-regex", r"([0-9]{6,})\.mp4$"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done


def _features(tmp_path: Path) -> None:
    labels = pcsv.read_csv(TEST_DATA / "KONVID_1K_metadata.csv",
                           convert_options=pcsv.ConvertOptions(
                               column_types={"flickr_id": pa.string()}))
    ids = labels.column("flickr_id")
    paths = pc.binary_join_element_wise("KoNViD_1k_videos/", ids, ".mp4", "")
    pq.write_table(pa.table({"path": paths, "frames": labels.column("nb_frames")}),
                   tmp_path / "f.parquet")


@pytest.mark.parametrize("pool", ["system", "mimalloc"])
def test_the_command_uses_jemalloc_unless_a_pool_is_named(tmp_path: Path, pool: str) -> None:
    _features(tmp_path)

    chosen = _join(tmp_path, "default.parquet", None).stdout.strip()
    named = _join(tmp_path, "named.parquet", pool).stdout.strip()

    assert chosen == ("jemalloc" if _has_jemalloc() else pa.default_memory_pool().backend_name)
    assert named == pool
    assert (tmp_path / "default.parquet").read_bytes() == (tmp_path / "named.parquet").read_bytes()
    assert pq.read_table(tmp_path / "default.parquet").column("mos").null_count == 0


@pytest.mark.skipif(not _has_jemalloc(), reason="this pyarrow has no jemalloc")
@pytest.mark.parametrize(("conf", "arenas"), [("", 1), ("narenas:3", 3)])
def test_jemalloc_has_one_arena_unless_the_user_names_a_number(tmp_path: Path, conf: str,
                                                              arenas: int) -> None:
    _features(tmp_path)
    # jemalloc prints its options at exit when asked to, the user's other options kept.
    done = _join(tmp_path, "out.parquet", None,
                 ",".join(filter(None, [conf, "stats_print:true"])), script=RUN)

    assert f"opt.narenas: {arenas}\n" in done.stderr
    assert "opt.stats_print: true" in done.stderr
