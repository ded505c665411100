"""`snakemake` under faults: SIGKILL and SIGINT mid-write, two runs at once, determinism.

A batch with one large table (a few hundred thousand per-frame rows, written as CSV so the
write takes seconds) and small tables in every format, chained into second opinions. Every
run's outputs are compared with one clean run's: tables by bytes (CSV, JSONL, JSON) or
values and schema (parquet), audits and reports apart from times and the run folder.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from rel_support import (
    SNAKEMAKE,
    kill_group,
    run_snakemake,
    start_snakemake,
    temp_files,
    tree,
    wait_for,
)

pytestmark = pytest.mark.skipif(not SNAKEMAKE.exists(), reason="snakemake is not installed")

CLIPS = 500
FRAMES = 800  # 400,000 rows: the big table's CSV takes a few seconds to write
LOCK_MESSAGE = "Directory cannot be locked"

MANIFEST = """\
mos_labels:
  defaults: {min_match_rate: 0.5}
  tables:
    - {id: big, features: data/frames.parquet, labels: [data/labels.csv], out: out/big.csv}
    - {id: small-pq, features: data/clips.csv, labels: [data/labels.csv, data/more.jsonl],
       out: out/small.parquet}
    - {id: small-json, features: data/clips.json, labels: [data/labels.csv],
       out: out/small.json, key_normalize: stem}
second_opinion:
  tables:
    - {id: so-chain, features: out/small.parquet, scores: [data/scores.jsonl],
       out: out/so.jsonl, key_column: video_id, score_key_field: video_id}
    - {id: so-csv, features: data/clips.csv, scores: [fork=data/scores.csv],
       out: out/so.csv, key_column: video_id, score_key_field: video_id}
"""


def make_project(folder: Path) -> Path:
    """Inputs and manifest of the batch under ``folder`` (deterministic content)."""
    data = folder / "data"
    data.mkdir(parents=True)
    rng = np.random.default_rng(11)
    clips = [f"clip_{i:04d}" for i in range(CLIPS)]
    frames = pd.DataFrame({
        "video_id": np.repeat(clips, FRAMES),
        "frame": np.tile(np.arange(FRAMES, dtype="int32"), CLIPS),
        "sharpness": rng.random(CLIPS * FRAMES).round(6),
    })
    frames.to_parquet(data / "frames.parquet", index=False, row_group_size=100_000)
    labelled = clips[: CLIPS - 20]  # some clips have no label
    pd.DataFrame({"video_id": labelled, "mos": (1 + 4 * rng.random(len(labelled))).round(3),
                  "n_ratings": rng.integers(5, 40, len(labelled))}
                 ).to_csv(data / "labels.csv", index=False)
    (data / "more.jsonl").write_text("".join(
        json.dumps({"video_id": c, "mos": 3.0}) + "\n" for c in clips[CLIPS - 20: CLIPS - 10]))
    small = pd.DataFrame({"video_id": clips[::7], "bitrate": rng.integers(100, 9000,
                                                                          len(clips[::7]))})
    small.to_csv(data / "clips.csv", index=False)
    (data / "clips.json").write_text(json.dumps(
        [{"name": f"{c}.mp4", "fps": 30} for c in clips[::11]]))
    (data / "scores.jsonl").write_text("".join(
        json.dumps({"competitor": "DOVER", "video_id": c, "score": i / 8, "runtime_ms": i})
        + "\n" for i, c in enumerate(clips[::3])))
    pd.DataFrame({"video_id": clips[::5], "score": np.arange(len(clips[::5])) / 4}
                 ).to_csv(data / "scores.csv", index=False)
    (folder / "manifest.yaml").write_text(MANIFEST)
    return folder


TABLES = ["out/big.csv", "out/small.parquet", "out/small.json", "out/so.jsonl", "out/so.csv"]
AUDITS = [f"{t}.audit.json" for t in TABLES]
REPORTS = ["reports/manifest/mos-labels.json", "reports/manifest/mos-labels.md",
           "reports/manifest/second-opinion.json", "reports/manifest/second-opinion.md"]
# Times differ by nature; argv differs with -c; the checkout's commit may move between the
# clean run and a later one while this suite runs.
VARYING = {"started_at", "finished_at", "argv", "git_commit"}


def comparable(value: Any, folder: Path) -> Any:
    """A JSON document without what varies by nature (times, argv, commit), with the run
    folder replaced by a placeholder, and without the hashes of files holding times (audits)."""
    if isinstance(value, dict):
        if str(value.get("path", "")).endswith(".audit.json"):
            value = {k: v for k, v in value.items() if k not in ("sha256", "size")}
        return {k: comparable(v, folder) for k, v in value.items()
                if k not in VARYING}
    if isinstance(value, list):
        return [comparable(v, folder) for v in value]
    if isinstance(value, str):
        return value.replace(str(folder), "<RUN>")
    return value


def table_content(path: Path) -> Any:
    """Bytes for text formats; values and schema (with its metadata) for parquet."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return table.schema.to_string(show_schema_metadata=True), table.to_pydict()
    return path.read_bytes()


def outputs(folder: Path) -> dict[str, Any]:
    """Everything a run produced, in a form equal between equivalent runs."""
    found: dict[str, Any] = {name: table_content(folder / name) for name in TABLES}
    for name in AUDITS + [r for r in REPORTS if r.endswith(".json")]:
        found[name] = comparable(json.loads((folder / name).read_text()), folder)
    for name in REPORTS:
        if name.endswith(".md"):
            found[name] = (folder / name).read_text()
    return found


def inputs(folder: Path) -> dict[str, bytes]:
    return {**tree(folder / "data"), "manifest.yaml": (folder / "manifest.yaml").read_bytes()}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("batch-source") / "project")


@pytest.fixture(scope="module")
def clean_run(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = copy_project(source, tmp_path_factory.mktemp("clean") / "project")
    done = run_snakemake(folder, "-c", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    return outputs(folder)


def copy_project(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    return folder


def big_table_being_written(folder: Path) -> bool:
    return any(p.name.startswith(".big.csv.") for p in (folder / "out").glob(".*.tmp"))


def test_sigkill_mid_write_then_unlock_and_resume(source: Path, clean_run, tmp_path: Path) -> None:
    folder = copy_project(source, tmp_path / "project")
    before = inputs(folder)
    process, log = start_snakemake(folder, "-c", "1")
    try:
        assert wait_for(lambda: big_table_being_written(folder), timeout=120), log.read_text()
    finally:
        kill_group(process, signal.SIGKILL)
        process.wait(timeout=30)
    killed_temps = set(temp_files(folder))

    assert not (folder / "out" / "big.csv").exists()  # no partial file under its own name
    for name in TABLES:  # whatever was published before the kill is complete
        if (folder / name).exists():
            assert table_content(folder / name) == clean_run[name], name
    assert inputs(folder) == before

    refused = run_snakemake(folder, "-c", "1")
    assert refused.returncode != 0 and LOCK_MESSAGE in refused.stderr
    assert run_snakemake(folder, "--unlock").returncode == 0
    resumed = run_snakemake(folder, "-c", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert outputs(folder) == clean_run
    assert inputs(folder) == before
    # The killed process could not remove its temporary file; the resumed job does.
    assert killed_temps and not temp_files(folder)


def test_sigint_stops_cleanly_and_the_next_run_needs_no_unlock(source: Path, clean_run,
                                                               tmp_path: Path) -> None:
    folder = copy_project(source, tmp_path / "project")
    before = inputs(folder)
    process, log = start_snakemake(folder, "-c", "1")
    try:
        assert wait_for(lambda: big_table_being_written(folder), timeout=120), log.read_text()
        kill_group(process, signal.SIGINT)
        returncode = process.wait(timeout=120)
    finally:
        kill_group(process, signal.SIGKILL)
    assert returncode != 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    assert inputs(folder) == before
    assert not (folder / ".snakemake" / "locks").exists() or \
        not any((folder / ".snakemake" / "locks").iterdir())
    assert temp_files(folder) == []

    again = run_snakemake(folder, "-c", "2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert outputs(folder) == clean_run
    assert inputs(folder) == before


def test_second_run_on_the_same_folder_is_refused(source: Path, clean_run,
                                                  tmp_path: Path) -> None:
    folder = copy_project(source, tmp_path / "project")
    before = inputs(folder)
    locks = folder / ".snakemake" / "locks"
    first, log = start_snakemake(folder, "-c", "1")
    try:
        assert wait_for(lambda: locks.exists() and any(locks.iterdir()), timeout=60)
        second = run_snakemake(folder, "-c", "1")
        assert first.poll() is None, "the first run ended before the second one started"
        returncode = first.wait(timeout=300)
    finally:
        kill_group(first, signal.SIGKILL)
    assert second.returncode != 0 and LOCK_MESSAGE in second.stderr, second.stderr[-2000:]
    assert returncode == 0, log.read_text()[-3000:]
    assert outputs(folder) == clean_run
    assert inputs(folder) == before and temp_files(folder) == []


def test_same_batch_with_one_or_two_cores_and_rerun_gives_identical_outputs(
        source: Path, clean_run, tmp_path: Path) -> None:
    one = copy_project(source, tmp_path / "one")
    done = run_snakemake(one, "-c", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    first = outputs(one)
    assert first == clean_run  # -c 1 here, -c 2 in the clean run, another folder
    again = run_snakemake(one, "-c", "2", "--forceall")
    assert again.returncode == 0, again.stderr[-3000:]
    assert outputs(one) == first
    dry = run_snakemake(one, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_ctrl_c_during_a_command_write_leaves_nothing(source: Path, tmp_path: Path) -> None:
    """The single-table command: SIGINT mid-write, one line, no output, no temporary file."""
    folder = copy_project(source, tmp_path / "project")
    before = inputs(folder)
    command = [str(SNAKEMAKE.parent / "materialize-mos-labels"), "--features",
               "data/frames.parquet", "--labels", "data/labels.csv", "--out", "out/o.csv",
               "--audit-json", "out/o.audit.json", "--min-match-rate", "0.5"]
    process = subprocess.Popen(command, cwd=folder, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert wait_for(lambda: any((folder / "out").glob(".o.csv.*.tmp")), timeout=120)
        kill_group(process, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        kill_group(process, signal.SIGKILL)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "materialize-mos-labels: interrupted"
    assert "Traceback" not in stderr
    assert not (folder / "out").exists() or list((folder / "out").iterdir()) == []
    assert inputs(folder) == before


def test_failing_tables_are_reported_one_line_each_and_publish_nothing(tmp_path: Path) -> None:
    files = {
        "data/f.csv": "video_id,x\na,1\nb,2\n",
        "data/l.csv": "video_id,mos\na,3\nb,4\n",
        "data/conflict.csv": "video_id,mos\nb,2\n",
        "data/bad.parquet": b"PAR1 truncated",
        "data/s.jsonl": '{"competitor": "d", "video_id": "a"}\n',
    }
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "manifest.yaml").write_text(
        "mos_labels:\n  tables:\n"
        "    - {id: good, features: data/f.csv, labels: [data/l.csv], out: out/good.csv}\n"
        "    - {id: conflict, features: data/f.csv, labels: [data/l.csv, data/conflict.csv],"
        " out: out/conflict.csv}\n"
        "    - {id: corrupt, features: data/bad.parquet, labels: [data/l.csv],"
        " out: out/corrupt.csv}\n"
        "second_opinion:\n  tables:\n"
        "    - {id: noscore, features: data/f.csv, scores: [data/s.jsonl],"
        " out: out/noscore.csv}\n")
    before = inputs(tmp_path)
    done = run_snakemake(tmp_path, "-c", "2")
    assert done.returncode != 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [  # with its sidecars
        ".good.csv.audit.json.previous", ".good.csv.previous", "good.csv", "good.csv.audit.json"]
    expected = {
        "conflict": ["data/conflict.csv", "key 'b'", "conflicting MOS labels"],
        "corrupt": ["data/bad.parquet", "cannot read table"],
        "noscore": ["data/s.jsonl", "key 'a'", "neither a score field"],
    }
    errors = {}
    for section in ("mos-labels", "second-opinion"):
        report = json.loads((tmp_path / "reports" / "manifest" / f"{section}.json").read_text())
        assert report["status"] == "failed"
        errors.update({t["id"]: t.get("error") for t in report["tables"]})
    assert errors.pop("good") is None
    for table_id, texts in expected.items():
        error = errors[table_id]
        assert "\n" not in error and f"table {table_id}" in error, error
        assert all(text in error for text in texts), error
    assert inputs(tmp_path) == before and temp_files(tmp_path) == []


def test_a_job_sweeps_only_its_own_leftover_temporaries(tmp_path: Path) -> None:
    from materializer.jobs import remove_stale_temporaries

    (tmp_path / "out").mkdir()
    names = [".t.parquet.ab12cd34.tmp", ".t.parquet.audit.json.0f0f0f0f.tmp",
             ".u.parquet.ab12cd34.tmp", "t.parquet", ".t.parquet.keep"]
    for name in names:
        (tmp_path / "out" / name).write_text("x", encoding="utf-8")
    remove_stale_temporaries(["out/t.parquet", "out/t.parquet.audit.json"], str(tmp_path))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".t.parquet.keep", ".u.parquet.ab12cd34.tmp", "t.parquet"]
