"""The streaming parquet path gives the in-memory path's result, row for row.

The tests run ``materialize-mos-labels`` as a user does, with
``MATERIALIZER_STREAM=never`` (whole table in memory) and ``always`` with a small batch
size (``MATERIALIZER_BATCH_ROWS=5000``), on a generated KoNViD-shaped per-frame table,
and compare the outputs and audits.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import Result, snapshot

from materializer import keys as keymod
from materializer import streaming

ROWS = 300_000
FRAMES_PER_CLIP = 150
BATCH_ROWS = "5000"
REGEX = r"([0-9]{10})\.mp4$"
KEY_ARGS = {
    "regex": ["--feature-key-regex", REGEX],
    "stem": ["--key-normalize", "stem"],
}


def run_mos(folder: Path, mode: str, *args: str, **env: str) -> Result:
    """Run the command in ``folder`` with the path forced to ``mode`` (never/always)."""
    environ = {**os.environ, "MATERIALIZER_STREAM": mode,
               "MATERIALIZER_BATCH_ROWS": BATCH_ROWS, **env}
    command = Path(sys.executable).parent / "materialize-mos-labels"
    done = subprocess.run([str(command), *args], cwd=folder, env=environ,
                          capture_output=True, text=True, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


def konvid_features(rows: int) -> pa.Table:
    """A per-frame table: path keys with gaps, a list column, nullable ints, floats."""
    rng = np.random.default_rng(5)
    row = np.arange(rows)
    clip = row // FRAMES_PER_CLIP
    paths = pd.Series([f"KoNViD_1k_videos/{3_000_000_000 + c * 7919}.mp4" for c in clip],
                      dtype=object)
    paths[row % 997 == 0] = None  # no key at all
    paths[row % 1009 == 0] = "  "  # blank: no key
    paths[row % 1013 == 0] = "KoNViD_1k_videos/notes.txt"  # the regex does not match
    frame = pd.array(row % FRAMES_PER_CLIP, dtype="Int64")
    frame[row % 101 == 0] = pd.NA
    tags = [["hdr", "night"] if r % 3 == 0 else ([] if r % 3 == 1 else None) for r in row]
    frame_table = pd.DataFrame({
        "path": paths,
        "frame": frame,
        "tags": tags,
        "f00": rng.standard_normal(rows).astype("float32"),
        "f01": rng.standard_normal(rows),
        "split": np.where(clip % 5 == 0, "test", "train"),
    })
    return pa.Table.from_pandas(frame_table, preserve_index=False)


def write_labels(folder: Path, clips: int) -> list[str]:
    """Two label files: 1-5 MOS for most clips, raw 0-100 for some more clips.

    Only the first has ``n_ratings``, so ``mos_n_ratings`` is an integer column with
    nulls (which used to crash both paths).
    """
    ids = 3_000_000_000 + np.arange(clips) * 7919
    first = pd.DataFrame({"flickr_id": ids[: clips * 8 // 10],
                          "mos": np.round(np.linspace(1, 5, clips * 8 // 10), 3),
                          "n_ratings": 50, "split": "label-split"})
    first.to_csv(folder / "labels-a.csv", index=False)
    second = pd.DataFrame({"flickr_id": ids[clips * 8 // 10: clips * 9 // 10],
                           "mos_raw_0_100": 62.5})
    second.to_json(folder / "labels-b.jsonl", orient="records", lines=True)
    return ["--labels", "labels-a.csv", "--labels", "labels-b.jsonl"]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the generated feature table (small row groups) and its labels."""
    folder = tmp_path_factory.mktemp("streaming")
    pq.write_table(konvid_features(ROWS), folder / "features.parquet", row_group_size=7000)
    write_labels(folder, -(-ROWS // FRAMES_PER_CLIP))
    return folder


def common_args(out: str, key: str) -> list[str]:
    return ["--features", "features.parquet", "--labels", "labels-a.csv",
            "--labels", "labels-b.jsonl", "--out", out, "--audit-json", out + ".audit.json",
            "--feature-key-column", "path", "--label-key-column", "flickr_id",
            "--min-match-rate", "0.5", *KEY_ARGS[key]]


def comparable_audit(path: Path) -> dict:
    """The audit without what legitimately differs between the two runs: ``streamed``,
    times, the output's name and bytes (row groups differ), and the paths in argv."""
    audit = json.loads(path.read_text())
    audit.pop("streamed", None)
    audit.pop("output")
    provenance = audit["run_provenance"]
    for name in ("started_at", "finished_at", "argv"):
        assert provenance.pop(name)
    outputs = provenance.pop("outputs")
    table = path.with_name(path.name.removesuffix(".audit.json"))  # hashed as it was written
    assert outputs["out"]["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    for name in ("out", "audit_json"):
        assert provenance["args"].pop(name)
    return audit


def assert_same_output(folder: Path, in_memory: str, streamed: str) -> None:
    """Same schema (metadata included), same columns in order, same values and dtypes."""
    expected = pq.read_table(folder / in_memory)
    got = pq.read_table(folder / streamed)
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.column_names == expected.column_names
    assert got.equals(expected)
    pd.testing.assert_frame_equal(got.to_pandas(), expected.to_pandas(), check_exact=True)


@pytest.mark.parametrize("key", sorted(KEY_ARGS))
def test_streaming_equals_in_memory(big: Path, key: str) -> None:
    memory = run_mos(big, "never", *common_args(f"memory-{key}.parquet", key))
    assert memory.returncode == 0, memory.stderr
    streamed = run_mos(big, "always", *common_args(f"stream-{key}.parquet", key))
    assert streamed.returncode == 0, streamed.stderr

    assert_same_output(big, f"memory-{key}.parquet", f"stream-{key}.parquet")
    out = pq.read_table(big / f"stream-{key}.parquet")
    assert out.num_rows == ROWS
    assert pq.ParquetFile(big / f"stream-{key}.parquet").metadata.num_row_groups > 1
    assert out.schema.field("tags").type == pa.list_(pa.string())
    assert out.schema.field("frame").type == pa.int64()
    assert out.schema.field("frame").nullable and out.column("frame").null_count > 0
    # Both statuses occur and the input columns come first, in their order.
    statuses = set(out.column("mos_label_status").to_pylist())
    assert statuses == {"ok", "missing-label"}
    assert out.column_names[:6] == ["path", "frame", "tags", "f00", "f01", "split"]

    memory_audit = comparable_audit(big / f"memory-{key}.parquet.audit.json")
    stream_audit = comparable_audit(big / f"stream-{key}.parquet.audit.json")
    assert stream_audit == memory_audit
    assert memory_audit["unkeyed_rows"] > 0 and memory_audit["unmatched_feature_keys"]
    assert memory_audit["input_rows"] == memory_audit["output_rows"] == ROWS
    streamed_audit = json.loads((big / f"stream-{key}.parquet.audit.json").read_text())
    assert streamed_audit["streamed"] == {"batch_rows": int(BATCH_ROWS)}
    assert "streamed" not in json.loads((big / f"memory-{key}.parquet.audit.json").read_text())


def test_match_rate_gate_fails_before_writing_when_streaming(big: Path) -> None:
    before = snapshot(big)
    args = common_args("gated.parquet", "regex")
    args[args.index("--min-match-rate") + 1] = "0.99"
    done = run_mos(big, "always", *args)
    assert done.returncode == 1
    assert "match rate" in done.stderr and "below --min-match-rate" in done.stderr
    assert "Traceback" not in done.stderr and "rows (" not in done.stderr  # no pass two
    assert snapshot(big) == before  # no output, no audit, no temporary file


def test_overwrite_refused_then_replaced_in_place(tmp_path: Path) -> None:
    table = konvid_features(20_000).append_column("mos", pa.array(np.zeros(20_000)))
    pq.write_table(table, tmp_path / "features.parquet", row_group_size=3000)
    write_labels(tmp_path, -(-20_000 // FRAMES_PER_CLIP))
    before = snapshot(tmp_path)
    refused = run_mos(tmp_path, "always", *common_args("o.parquet", "regex"))
    assert refused.returncode == 1
    assert "refusing to overwrite existing columns mos" in refused.stderr
    assert snapshot(tmp_path) == before

    for mode in ("never", "always"):
        done = run_mos(tmp_path, mode, *common_args(f"{mode}.parquet", "regex"),
                       "--overwrite")
        assert done.returncode == 0, done.stderr
    assert_same_output(tmp_path, "never.parquet", "always.parquet")
    out = pq.read_table(tmp_path / "always.parquet")
    assert out.column_names.index("mos") == table.column_names.index("mos")  # in place
    assert comparable_audit(tmp_path / "always.parquet.audit.json") == \
        comparable_audit(tmp_path / "never.parquet.audit.json")


def test_empty_table_keeps_its_schema(tmp_path: Path) -> None:
    pq.write_table(konvid_features(10).slice(0, 0), tmp_path / "features.parquet")
    write_labels(tmp_path, 10)
    for mode in ("never", "always"):
        args = common_args(f"{mode}.parquet", "regex")
        args[args.index("--min-match-rate") + 1] = "0"
        done = run_mos(tmp_path, mode, *args)
        assert done.returncode == 0, done.stderr
    assert_same_output(tmp_path, "never.parquet", "always.parquet")
    out = pq.read_table(tmp_path / "always.parquet")
    assert out.num_rows == 0 and "mos" in out.column_names
    assert out.schema.field("tags").type == pa.list_(pa.string())
    assert comparable_audit(tmp_path / "always.parquet.audit.json") == \
        comparable_audit(tmp_path / "never.parquet.audit.json")


def test_progress_line_shows_rows_rate_and_time_left(big: Path) -> None:
    done = run_mos(big, "always", *common_args("progress.parquet", "regex"),
                   MATERIALIZER_PROGRESS_SECONDS="0")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "rows/s" in line]
    assert len(lines) >= 2, done.stderr
    assert f"{ROWS}/{ROWS} rows (100%)" in lines[-1] and "s left" in lines[-1]
    assert "features.parquet -> progress.parquet" in lines[0]


def test_auto_keeps_small_tables_and_other_formats_in_memory(big: Path) -> None:
    small = run_mos(big, "auto", *common_args("auto.parquet", "regex"))
    assert small.returncode == 0, small.stderr
    assert "streamed" not in json.loads((big / "auto.parquet.audit.json").read_text())
    forced = run_mos(big, "auto", *common_args("auto-forced.parquet", "regex"),
                     MATERIALIZER_STREAM_THRESHOLD_BYTES="1000")
    assert forced.returncode == 0, forced.stderr
    assert "streamed" in json.loads((big / "auto-forced.parquet.audit.json").read_text())
    jsonl = run_mos(big, "always", *common_args("always.jsonl", "regex"))
    assert jsonl.returncode == 0, jsonl.stderr
    assert "streamed" not in json.loads((big / "always.jsonl.audit.json").read_text())


@pytest.mark.parametrize("column", ["path", "f01"])
def test_corrupt_page_is_one_clear_error_and_writes_nothing(tmp_path: Path, column: str) -> None:
    # The key column is read in pass one, the others only in pass two (while writing).
    pq.write_table(konvid_features(20_000), tmp_path / "features.parquet",
                   row_group_size=5000, compression="snappy")
    write_labels(tmp_path, -(-20_000 // FRAMES_PER_CLIP))
    chunk = pq.ParquetFile(tmp_path / "features.parquet").metadata.row_group(2).column(
        ["path", "frame", "tags", "f00", "f01", "split"].index(column))
    data = bytearray((tmp_path / "features.parquet").read_bytes())
    start = chunk.data_page_offset + 40
    data[start:start + 400] = bytes(400)
    (tmp_path / "features.parquet").write_bytes(bytes(data))
    before = snapshot(tmp_path)
    for mode in ("never", "always"):
        done = run_mos(tmp_path, mode, *common_args("o.parquet", "regex"))
        assert done.returncode == 1, done.stderr
        assert done.stderr.startswith("materialize-mos-labels: error: features.parquet: "
                                      "cannot read table"), done.stderr
        assert "Traceback" not in done.stderr
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("policy", ["mark", "drop"])
def test_second_opinion_joins_stream_with_the_in_memory_result(tmp_path: Path,
                                                               policy: str) -> None:
    """Second-opinion joins go through the same skeleton: a large parquet table streams,
    with the same rows (``drop`` removes the same ones) and the same audit."""
    rows = 40_000
    features = konvid_features(rows)
    pq.write_table(features, tmp_path / "f.parquet", row_group_size=7000)
    clips = 3_000_000_000 + np.arange(rows // FRAMES_PER_CLIP) * 7919
    scored = pd.DataFrame({"competitor": "dover", "path": [f"{c}.mp4" for c in clips[::2]],
                           "score": np.linspace(0, 1, len(clips[::2])),
                           "status": np.where(np.arange(len(clips[::2])) % 7 == 0, "failed",
                                              "ok")})
    scored.to_csv(tmp_path / "s.csv", index=False)
    command = str(Path(sys.executable).parent / "materialize-second-opinion-features")
    audits = {}
    for mode in ("never", "always"):
        environ = dict(os.environ, MATERIALIZER_STREAM=mode, MATERIALIZER_BATCH_ROWS=BATCH_ROWS)
        done = subprocess.run(
            [command, "--features", "f.parquet", "--scores", "s.csv", "--out", f"{mode}.parquet",
             "--audit-json", f"{mode}.json", "--key-column", "path", "--key-normalize",
             "basename", "--missing-policy", policy],
            cwd=tmp_path, env=environ, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        audits[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    assert "streamed" in audits["always"] and "streamed" not in audits["never"]
    for audit in audits.values():
        audit.pop("run_provenance")
        audit.pop("streamed", None)
        audit.pop("output")
    assert audits["never"] == audits["always"]
    never, always = (pq.read_table(tmp_path / f"{m}.parquet") for m in ("never", "always"))
    assert never.equals(always)
    status = never.column("second_opinion_dover_status").to_pylist()
    assert never.num_rows == audits["never"]["output_rows"]
    if policy == "mark":
        assert never.num_rows == rows and {"ok", "bad", "missing"} == set(status)
    else:
        assert 0 < never.num_rows < rows and "missing" not in status


def test_pass_two_gets_pass_ones_keys_whatever_its_batches(tmp_path: Path) -> None:
    """The spill gives back each row's key in order, also when pass two asks for other
    batch sizes than pass one wrote (a take spanning two written batches, or part of one),
    with the hashes and the lookups pass one made on the keys."""
    normalize = keymod.KeyNormalizer("path", "basename", None)
    labels = keymod.KeyIndex(pa.array(["3.mp4", "2.mp4"]), name="labels")
    written = [["a/1.mp4", "a/1.mp4", None], ["b/2.mp4", " ", "a/1.mp4", "c/3.mp4", "b/2.mp4"],
               [], ["c/3.mp4", "d/4.mp4"]]
    spill = streaming.KeySpill(tmp_path)
    for keys, _ in spill.keeping((normalize(pa.array(rows, type=pa.string())), {})
                                 for rows in written):
        labels.lookup(keys)  # as the core does, after the spill was handed the batch
    expected = [keymod.KeyNormalizer("path", "basename", None)(pa.array([row]))
                for rows in written for row in rows]
    expected = [None if len(k.keys) == 0 or k.codes[0] < 0 else k.keys[0].as_py()
                for k in expected]
    got, found = [], []
    for rows in (4, 1, 3, 2):
        keys = spill.take(rows)
        assert keys.hashes.tolist() == keymod.text_hashes(keys.keys).tolist()
        got += [None if code < 0 else keys.keys[int(code)].as_py() for code in keys.codes]
        found += [None if code < 0 else int(keys.found["labels"][code]) for code in keys.codes]
    spill.close()
    assert found == [None if key is None else {"3.mp4": 0, "2.mp4": 1}.get(key, -1)
                     for key in expected]
    assert got == expected == ["1.mp4", "1.mp4", None, "2.mp4", None, "1.mp4", "3.mp4",
                               "2.mp4", "3.mp4", "4.mp4"]


def test_unmatched_label_keys_are_the_first_labels_no_row_has(tmp_path: Path) -> None:
    """The audit's sample of unused labels comes from the lookups the join made: the
    first five in label order, on either path, across batches."""
    clips = [3, 1, 3, 5, 1, 11]
    pq.write_table(pa.table({"path": [f"v/{c}.mp4" for c in clips],
                             "x": np.arange(len(clips), dtype=np.float64)}),
                   tmp_path / "f.parquet", row_group_size=2)
    labels = [1, 9, 7, 3, 8, 5, 6, 2, 4]
    pd.DataFrame({"key": [f"{c}.mp4" for c in labels], "mos": 3.0}).to_csv(
        tmp_path / "l.csv", index=False)
    for mode in ("never", "always"):
        done = run_mos(tmp_path, mode, "--features", "f.parquet", "--labels", "l.csv",
                       "--out", f"{mode}.parquet", "--audit-json", f"{mode}.json",
                       "--feature-key-column", "path", "--label-key-column", "key",
                       "--min-match-rate", "0", MATERIALIZER_BATCH_ROWS="2")
        assert done.returncode == 0, done.stderr
        audit = json.loads((tmp_path / f"{mode}.json").read_text())
        assert audit["unmatched_label_keys"] == ["9.mp4", "7.mp4", "8.mp4", "6.mp4", "2.mp4"]
