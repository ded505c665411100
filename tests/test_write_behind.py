"""``files.WriteBehind``: the bytes a writer hands over reach the file in order, and the
sha256 it returns is the file's, however the writes are cut; an error in its thread
reaches the writer."""

from __future__ import annotations

import errno
import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from materializer.files import WriteBehind


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 3000), max_size=80),
       hand_over=st.sampled_from([1, 7, 4096, WriteBehind.HAND_OVER]),
       sync_every=st.sampled_from([1, 5000, WriteBehind.SYNC_EVERY]))
def test_the_file_and_its_hash_are_the_bytes_written(tmp_path_factory, sizes: list[int],
                                                     hand_over: int, sync_every: int) -> None:
    path = tmp_path_factory.mktemp("wb") / "t.bin"
    path.touch()
    data = np.random.default_rng(len(sizes)).integers(0, 256, sum(sizes), np.uint8).tobytes()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(WriteBehind, "HAND_OVER", hand_over)
        patch.setattr(WriteBehind, "SYNC_EVERY", sync_every)
        patch.setattr(WriteBehind, "QUEUED", 2)  # the writer waits for the thread too
        with WriteBehind(path) as sink:
            at = 0
            for size in sizes:  # bytes, and views of a buffer that is reused after
                piece = data[at:at + size]
                assert sink.write(memoryview(bytearray(piece)) if size % 2 else piece) == size
                at += size
            assert sink.tell() == len(data)
            digest = sink.finish()
    assert path.read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()


def test_many_small_writes_are_handed_over_in_writev_sized_pieces(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    path.touch()
    lines = [f"{i},{i * 7}\n".encode() for i in range(20_000)]  # more parts than IOV_MAX
    with WriteBehind(path) as sink:
        for line in lines:
            sink.write(line)
        digest = sink.finish()
    assert path.read_bytes() == b"".join(lines)
    assert digest == hashlib.sha256(b"".join(lines)).hexdigest()


def test_parquet_and_text_writers_write_through_it(tmp_path: Path) -> None:
    table = pa.table({"k": [f"clip_{i}" for i in range(50_000)],
                      "x": np.random.default_rng(3).random(50_000)})
    pq.write_table(table, tmp_path / "direct.parquet")
    (tmp_path / "behind.parquet").touch()
    with WriteBehind(tmp_path / "behind.parquet") as sink:
        pq.write_table(table, sink)
        digest = sink.finish()
    written = (tmp_path / "behind.parquet").read_bytes()
    assert written == (tmp_path / "direct.parquet").read_bytes()
    assert digest == hashlib.sha256(written).hexdigest()
    (tmp_path / "t.csv").touch()
    with WriteBehind(tmp_path / "t.csv") as sink:
        text = io.TextIOWrapper(sink, encoding="utf-8", newline="\n")
        text.write("k,x\nä,1\n")
        text.detach()
        assert not sink.closed
        sink.finish()
    assert (tmp_path / "t.csv").read_bytes() == "k,x\nä,1\n".encode()


def test_a_full_disk_in_the_thread_reaches_the_writer() -> None:
    full = Path("/dev/full")  # every write fails with ENOSPC
    if not full.exists():
        pytest.skip("no /dev/full")
    with WriteBehind(full) as sink:
        sink.write(b"x" * (WriteBehind.HAND_OVER + 1))
        with pytest.raises(OSError) as raised:
            for _ in range(WriteBehind.QUEUED + 1):  # the writer waits, then sees it
                sink.write(b"y" * WriteBehind.HAND_OVER)
            sink.finish()
    assert raised.value.errno == errno.ENOSPC
    assert sink.closed
