"""materialize-second-opinion-features, through the command as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import snapshot, write_table

FEATURES = [{"video_id": "clip_a1", "vmaf_score": 91.0}, {"video_id": "clip_a2",
                                                           "vmaf_score": 80.0}]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_scalar_jsonl_join(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [
        {"competitor": "DOVER-Mobile", "video_id": "clip_a1", "score": 71.0, "runtime_ms": 2},
        {"competitor": "DOVER-Mobile", "video_id": "clip_a2", "score": 65.5},
    ])
    done = second_opinion("--features", "f.jsonl", "--scores", "s.jsonl", "--out", "o.parquet",
                          "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    base = "second_opinion_dover_mobile"
    assert out[f"{base}_score"].tolist() == [71.0, 65.5]
    assert out[f"{base}_status"].tolist() == ["ok", "ok"]
    assert out[f"{base}_runtime_ms"].tolist()[0] == 2.0
    assert out[f"{base}_source"].tolist() == ["s.jsonl", "s.jsonl"]
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["competitors"]["DOVER-Mobile"]["matched_rows"] == 2
    assert audit["run_provenance"]["inputs"]["scores"][0]["sha256"]  # W8: sidecars hashed


def test_wrapper_json_with_frames_and_summary(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.parquet", [{"name": "clip.mp4", "x": 1}])
    (tmp_path / "w.json").write_text(json.dumps({
        "name": "dir/clip.mp4",
        "summary": {"competitor": "fork-nr", "runtime_total_ms": 3.5},
        "frames": [{"predicted_vmaf_or_mos": 70}, {"predicted_vmaf_or_mos": 74}],
    }))
    done = second_opinion("--features", "f.parquet", "--scores", "w.json", "--out", "o.jsonl")
    assert done.returncode == 0, done.stderr
    row = json.loads((tmp_path / "o.jsonl").read_text())
    assert row["second_opinion_fork_nr_score"] == 72.0
    assert row["second_opinion_fork_nr_frames"] == 2
    assert row["second_opinion_fork_nr_runtime_ms"] == 3.5


def test_runtime_falls_back_to_the_sum_over_frames(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.csv", [{"clip_id": "c"}])
    (tmp_path / "s.json").write_text(json.dumps({"rows": [{
        "clip_id": "c", "competitor": "q", "frames": [{"score": 1, "elapsed_ms": 2},
                                                      {"score": 3, "elapsed_ms": 5}]}]}))
    done = second_opinion("--features", "f.csv", "--scores", "s.json", "--out", "o.csv")
    assert done.returncode == 0, done.stderr
    out = pd.read_csv(tmp_path / "o.csv")
    assert out.loc[0, "second_opinion_q_runtime_ms"] == 7.0
    assert out.loc[0, "second_opinion_q_score"] == 2.0


def test_missing_rows_are_marked(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a1", "score": 1.0}])
    done = second_opinion("--features", "f.jsonl", "--scores", "dover=s.jsonl", "--out",
                          "o.jsonl", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert rows[1]["second_opinion_dover_score"] is None
    assert rows[1]["second_opinion_dover_status"] == "missing"
    assert rows[1]["second_opinion_dover_frames"] == 0
    assert json.loads((tmp_path / "a.json").read_text())["competitors"]["dover"][
        "missing_rows"] == 1


def test_missing_policy_fail_and_drop(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a1", "score": 1.0}])
    failed = second_opinion("--features", "f.jsonl", "--scores", "dover=s.jsonl", "--out",
                            "o.jsonl", "--missing-policy", "fail")
    assert failed.returncode == 1
    assert "missing second-opinion scores: dover=1" in failed.stderr
    assert not (tmp_path / "o.jsonl").exists()
    dropped = second_opinion("--features", "f.jsonl", "--scores", "dover=s.jsonl", "--out",
                             "d.parquet", "--missing-policy", "drop")
    assert dropped.returncode == 0
    assert pd.read_parquet(tmp_path / "d.parquet")["video_id"].tolist() == ["clip_a1"]
    bad = second_opinion("--features", "f.jsonl", "--scores", "s.jsonl", "--out", "x.jsonl",
                         "--missing-policy", "ignore")
    assert bad.returncode == 2


def test_duplicate_competitor_key_is_an_error(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a1", "score": 1.0},
                                  {"video_id": "clip_a1", "score": 1.0}])
    done = second_opinion("--features", "f.jsonl", "--scores", "d=s.jsonl", "--out", "o.jsonl")
    assert done.returncode == 1
    assert "duplicate score for competitor 'd'" in done.stderr and "clip_a1" in done.stderr


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_competitors_with_one_slug_are_an_error_naming_both(tmp_path: Path, second_opinion,
                                                            extra) -> None:
    # B7: q-align and Q_Align would write the same columns.
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "a.jsonl", [{"video_id": "clip_a1", "score": 1.0}])
    _jsonl(tmp_path / "b.jsonl", [{"video_id": "clip_a1", "score": 2.0}])
    done = second_opinion("--features", "f.jsonl", "--scores", "q-align=a.jsonl",
                          "--scores", "Q_Align=b.jsonl", "--out", "o.jsonl", *extra)
    assert done.returncode == 2
    assert "'Q_Align' and 'q-align'" in done.stderr


def test_payload_competitor_beats_label_and_no_competitor_is_an_error(
        tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a1", "score": 1.0, "competitor": "musiq"}])
    done = second_opinion("--features", "f.jsonl", "--scores", "other=s.jsonl", "--out",
                          "o.parquet")
    assert done.returncode == 0
    assert "second_opinion_musiq_score" in pq.read_schema(tmp_path / "o.parquet").names
    _jsonl(tmp_path / "n.jsonl", [{"video_id": "clip_a1", "score": 1.0}])
    missing = second_opinion("--features", "f.jsonl", "--scores", "n.jsonl", "--out", "p.jsonl")
    assert missing.returncode == 1 and "no competitor" in missing.stderr


def test_null_score_on_a_failed_row_is_allowed(tmp_path: Path, second_opinion) -> None:
    # W11: a failed scorer row need not carry a number; a later candidate still counts.
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [
        {"video_id": "clip_a1", "score": None, "status": "error"},
        {"video_id": "clip_a2", "score": None, "mos": 3.0},
    ])
    done = second_opinion("--features", "f.jsonl", "--scores", "x=s.jsonl", "--out", "o.jsonl",
                          "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert rows[0]["second_opinion_x_status"] == "bad" and rows[0]["second_opinion_x_score"] \
        is None
    assert rows[1]["second_opinion_x_score"] == 3.0
    assert json.loads((tmp_path / "a.json").read_text())["competitors"]["x"]["bad_rows"] == 1


def test_row_with_neither_score_nor_frames_is_an_error(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a1", "status": "ok"}])
    before = snapshot(tmp_path)
    done = second_opinion("--features", "f.jsonl", "--scores", "x=s.jsonl", "--out", "o.jsonl")
    assert done.returncode == 1
    assert "neither a score field nor non-empty frames[]" in done.stderr
    assert "s.jsonl" in done.stderr and "clip_a1" in done.stderr
    assert snapshot(tmp_path) == before


def test_null_feature_keys_are_missing_not_the_text_none(tmp_path: Path,
                                                         second_opinion) -> None:
    # B6: a null feature key must not match a score keyed "None".
    (tmp_path / "f.jsonl").write_text('{"video_id": null}\n{"video_id": "None"}\n')
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "None", "score": 1.0}])
    done = second_opinion("--features", "f.jsonl", "--scores", "x=s.jsonl", "--out", "o.jsonl",
                          "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["second_opinion_x_status"] for r in rows] == ["missing", "ok"]
    assert json.loads((tmp_path / "a.json").read_text())["unkeyed_feature_rows"] == 1


def test_csv_and_parquet_score_tables(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.csv", [{"path": "v/a.mp4"}, {"path": "v/b.mp4"}])
    write_table(tmp_path / "s.csv", [{"path": "x/a.mp4", "score": 0.1, "competitor": "niqe"}])
    write_table(tmp_path / "t.parquet", [{"path": "b.mp4", "quality": 0.7}])
    done = second_opinion("--features", "f.csv", "--scores", "s.csv", "--scores",
                          "clip-iqa=t.parquet", "--out", "o.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out["second_opinion_niqe_score"].tolist()[0] == 0.1
    assert out["second_opinion_clip_iqa_score"].tolist()[1] == 0.7
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["competitors"]["niqe"]["unmatched_scores"] == 0


def test_scores_matching_no_feature_row_are_counted(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a1", "score": 1.0},
                                  {"video_id": "elsewhere", "score": 2.0}])
    done = second_opinion("--features", "f.jsonl", "--scores", "x=s.jsonl", "--out", "o.jsonl",
                          "--audit-json", "a.json")
    assert done.returncode == 0
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["unmatched_scores"] == 1
    assert audit["competitors"]["x"]["unmatched_score_keys"] == ["elsewhere"]


def test_existing_columns_need_overwrite(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", [{"video_id": "clip_a1", "second_opinion_x_score": 0.0}])
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a1", "score": 1.0}])
    refused = second_opinion("--features", "f.jsonl", "--scores", "x=s.jsonl", "--out",
                             "o.jsonl")
    assert refused.returncode == 1 and "refusing to overwrite" in refused.stderr
    done = second_opinion("--features", "f.jsonl", "--scores", "x=s.jsonl", "--out", "o.jsonl",
                          "--overwrite")
    assert done.returncode == 0
    assert json.loads((tmp_path / "o.jsonl").read_text())["second_opinion_x_score"] == 1.0


def test_non_numeric_score_names_file_and_key(tmp_path: Path, second_opinion) -> None:
    write_table(tmp_path / "f.jsonl", FEATURES)
    _jsonl(tmp_path / "s.jsonl", [{"video_id": "clip_a2", "score": "high"}])
    done = second_opinion("--features", "f.jsonl", "--scores", "x=s.jsonl", "--out", "o.jsonl")
    assert done.returncode == 1
    assert "'high' is not a finite number" in done.stderr and "clip_a2" in done.stderr


def test_label_with_equals_in_path_is_not_split(tmp_path: Path, second_opinion) -> None:
    # W4: a path holding '=' stays one path.
    write_table(tmp_path / "f.jsonl", FEATURES)
    (tmp_path / "runs").mkdir()
    _jsonl(tmp_path / "runs/crf=23.jsonl", [{"video_id": "clip_a1", "score": 1.0,
                                             "competitor": "c"}])
    done = second_opinion("--features", "f.jsonl", "--scores", "runs/crf=23.jsonl", "--out",
                          "o.jsonl")
    assert done.returncode == 0, done.stderr
