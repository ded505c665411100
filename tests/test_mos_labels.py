"""materialize-mos-labels, through the command as a user runs it."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_any, snapshot, write_table

KONVID_FEATURES = [
    {"key": "12345678", "vmaf_score": 91.5, "psnr": 40.0},
    {"key": "87654321", "vmaf_score": 80.25, "psnr": 35.5},
]
KONVID_LABELS = [
    {"src": "orig_12345678_540_5s.mp4", "mos": 3.5, "mos_std_dev": 0.4, "n_ratings": 5},
    {"src": "orig_87654321_540_5s.mp4", "mos_raw_0_100": 50.0, "mos": None},
]


def test_regex_key_join_copies_labels_and_extras(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.jsonl", KONVID_FEATURES)
    write_table(tmp_path / "l.jsonl", [KONVID_LABELS[0]])
    done = mos("--features", "f.jsonl", "--labels", "l.jsonl", "--out", "o.jsonl",
               "--audit-json", "a.json", "--feature-key-column", "key",
               "--label-key-column", "src", "--label-key-regex", "([0-9]{6,})",
               "--min-match-rate", "0.5")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert rows[0]["mos"] == 3.5 and rows[0]["mos_raw_0_100"] == 62.5
    assert rows[0]["mos_label_status"] == "ok" and rows[0]["mos_std_dev"] == 0.4
    assert rows[0]["mos_n_ratings"] == 5 and rows[0]["mos_label_source"] == "l.jsonl"
    assert rows[1]["mos"] is None and rows[1]["mos_label_status"] == "missing-label"
    assert rows[1]["mos_label_source"] == ""
    assert rows[0]["psnr"] == 40.0 and isinstance(rows[0]["psnr"], float)  # B1: stays 40.0
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["matched_rows"] == 1 and audit["missing_rows"] == 1
    assert audit["match_rate"] == 0.5 and audit["unmatched_feature_keys"] == ["87654321"]
    assert list(audit) == sorted(audit)


def test_raw_0_100_column_is_converted(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos_raw_0_100": 50}])
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out.loc[0, "mos"] == 3.0 and out.loc[0, "mos_raw_0_100"] == 50.0


def test_scale_is_decided_per_column_not_per_row(tmp_path: Path, mos) -> None:
    # B4: a 0-100 column holding a low value (3) must not be read as a 1-5 MOS.
    write_table(tmp_path / "f.csv", [{"key": "a"}, {"key": "b"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "raw_mos": 3}, {"key": "b", "raw_mos": 80}])
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out["mos"].tolist() == pytest.approx([1.12, 4.2])
    assert json.loads((tmp_path / "a.json").read_text())["label_files"][0]["scale"] == "0-100"


def test_mos_scale_flag_forces_0_100(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 4}])
    assert mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--mos-scale", "0-100").returncode == 0
    assert pd.read_parquet(tmp_path / "o.parquet").loc[0, "mos"] == pytest.approx(1.16)


@pytest.mark.parametrize(("value", "scale", "message"), [
    ("abc", "auto", "'abc' is not a finite number"),
    ("inf", "auto", "is not a finite number"),
    ("", "auto", "is not a finite number"),
    ("120", "auto", "outside the 0-100 scale"),
    ("0.5", "1-5", "outside the 1-5 scale"),
])
def test_bad_mos_values_name_file_key_and_value(tmp_path: Path, mos, value, scale,
                                                message) -> None:
    (tmp_path / "f.csv").write_text("key\nclip1\n")
    (tmp_path / "l.csv").write_text(f"key,mos\nclip1,{value}\n")
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--mos-scale", scale)
    assert done.returncode == 1
    assert message in done.stderr and "l.csv" in done.stderr and "clip1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_low_match_rate_fails_with_counts_and_writes_nothing(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": k} for k in ("a", "b", "c")])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 3.0}])
    before = snapshot(tmp_path)
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--audit-json", "a.json", "--min-match-rate", "0.8")
    assert done.returncode == 1
    assert "match rate 0.333 below --min-match-rate 0.800 (1/3 keys" in done.stderr
    assert snapshot(tmp_path) == before


def test_rows_without_a_key_count_against_the_rate(tmp_path: Path, mos) -> None:
    # The older script left unkeyed rows out: a regex keying 1 of 3 rows reported 100 %.
    write_table(tmp_path / "f.csv", [{"path": "x/A001.mp4"}, {"path": "x/B1.mp4"},
                                     {"path": None}])
    write_table(tmp_path / "l.csv", [{"key": "A001", "mos": 3.0}])
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--audit-json", "a.json", "--feature-key-regex", r"(A\d{3})",
               "--min-match-rate", "0")
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["unkeyed_rows"] == 2 and audit["total_feature_keys"] == 1
    assert audit["match_rate"] == pytest.approx(1 / 3)


def test_partial_coverage_above_minimum_marks_missing_rows(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}, {"key": "b"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 3.0}])
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.json",
               "--min-match-rate", "0.5")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert rows[1]["mos"] is None and rows[1]["mos_label_status"] == "missing-label"


def test_identical_duplicates_are_kept_once_and_conflicts_fail(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}])
    write_table(tmp_path / "l1.csv", [{"key": "a", "mos": 3.0}])
    write_table(tmp_path / "l2.csv", [{"key": "a", "mos": 3.0}])
    write_table(tmp_path / "l3.csv", [{"key": "a", "mos": 3.1}])
    ok = mos("--features", "f.csv", "--labels", "l1.csv", "--labels", "l2.csv",
             "--out", "o.parquet")
    assert ok.returncode == 0, ok.stderr
    bad = mos("--features", "f.csv", "--labels", "l1.csv", "--labels", "l3.csv",
              "--out", "o2.parquet")
    assert bad.returncode == 1
    assert "conflicting MOS labels" in bad.stderr and "l1.csv" in bad.stderr
    assert "l3.csv" in bad.stderr and "'a'" in bad.stderr


def test_existing_columns_need_overwrite(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a", "mos": 1.0}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 3.0}])
    refused = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet")
    assert refused.returncode == 1 and "refusing to overwrite" in refused.stderr
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--overwrite")
    assert done.returncode == 0
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out.columns.tolist()[:2] == ["key", "mos"] and out.loc[0, "mos"] == 3.0


def test_feature_split_is_never_replaced_by_labels(tmp_path: Path, mos) -> None:
    # B9: label extras must not destroy the feature table's fold assignment.
    write_table(tmp_path / "f.csv", [{"key": "a", "split": "train"}, {"key": "b",
                                                                     "split": "test"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 3.0, "split": "val", "corpus": "k"}])
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--min-match-rate", "0", "--overwrite", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out["split"].tolist() == ["train", "test"]
    assert pq.read_table(tmp_path / "o.parquet").column("corpus").to_pylist() == ["k", None]
    assert json.loads((tmp_path / "a.json").read_text())["kept_feature_columns"] == ["split"]


def test_keys_are_text_as_written(tmp_path: Path, mos) -> None:
    # B1/B3: "00123" keeps its zeros, 101 with a null does not become "101.0".
    (tmp_path / "f.jsonl").write_text('{"key": "00123", "x": 1}\n{"key": "123", "x": 2}\n')
    (tmp_path / "l.csv").write_text("key,mos\n00123,3.0\n")
    done = mos("--features", "f.jsonl", "--labels", "l.csv", "--out", "o.jsonl",
               "--min-match-rate", "0")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["00123", "123"]
    assert [r["mos_label_status"] for r in rows] == ["ok", "missing-label"]

    (tmp_path / "g.json").write_text(json.dumps([{"clip_id": 101}, {"clip_id": None},
                                                 {"clip_id": 7}]))
    (tmp_path / "m.csv").write_text("clip_id,mos\n101,2.0\n7,4.0\n")
    done = mos("--features", "g.json", "--labels", "m.csv", "--out", "o2.csv",
               "--min-match-rate", "0", "--audit-json", "a2.json")
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "a2.json").read_text())
    assert audit["matched_rows"] == 2 and audit["unkeyed_rows"] == 1
    assert "None" not in audit["unmatched_feature_keys"]


def test_date_like_columns_are_not_converted(tmp_path: Path, mos) -> None:
    # B2: an integer created_at stays an integer and JSONL output does not crash.
    (tmp_path / "f.jsonl").write_text('{"key": "a", "created_at": 1600000000}\n')
    (tmp_path / "l.jsonl").write_text('{"key": "a", "mos": 4.0}\n')
    done = mos("--features", "f.jsonl", "--labels", "l.jsonl", "--out", "o.jsonl")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "o.jsonl").read_text())["created_at"] == 1600000000


def test_optional_regex_group_that_does_not_take_part_is_a_missing_key(tmp_path: Path,
                                                                        mos) -> None:
    # B5: group 1 not taking part means no key, not a crash.
    write_table(tmp_path / "f.csv", [{"key": "b1"}, {"key": "ab"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 2.0}])
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--feature-key-regex", "(a)?b", "--min-match-rate", "0", "--audit-json",
               "a.json")
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["unkeyed_rows"] == 1 and audit["matched_rows"] == 1


def test_invalid_regex_is_a_usage_error_before_reading(tmp_path: Path, mos) -> None:
    done = mos("--features", "missing.csv", "--labels", "l.csv", "--out", "o.parquet",
               "--feature-key-regex", "([0-9]")
    assert done.returncode == 2
    assert "--feature-key-regex is not a valid regular expression" in done.stderr


def test_parquet_list_columns_and_dtypes_survive_every_output_format(tmp_path: Path,
                                                                    mos) -> None:
    table = pa.table({
        "key": ["a", "b"],
        "frames": pa.array([[1.0, 2.0], [3.0]], type=pa.list_(pa.float64())),
        "count": pa.array([1, None], type=pa.int64()),
        "when": pa.array([0, 1], type=pa.timestamp("s")),
    })
    pq.write_table(table, tmp_path / "f.parquet")
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 4.0}, {"key": "b", "mos": 2.0}])
    for out in ("o.parquet", "o.jsonl", "o.json"):
        done = mos("--features", "f.parquet", "--labels", "l.csv", "--out", out)
        assert done.returncode == 0, f"{out}: {done.stderr}"
    written = pq.read_table(tmp_path / "o.parquet")
    assert written.schema.field("frames").type == pa.list_(pa.float64())
    assert written.schema.field("count").type == pa.int64()
    assert written.column("count").to_pylist() == [1, None]
    assert read_any(tmp_path / "o.jsonl")["frames"].tolist() == [[1.0, 2.0], [3.0]]
    assert read_any(tmp_path / "o.json")["when"].tolist()[0].startswith("1970-01-01")


def test_csv_with_bom_and_crlf_is_read(tmp_path: Path, mos) -> None:
    (tmp_path / "f.csv").write_bytes("\ufeffvid,x\r\nA,1\r\nB,2\r\n".encode())
    (tmp_path / "l.csv").write_bytes("\ufeffvid,mos\r\nA,3.0\r\nB,4.0\r\n".encode())
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
               "--feature-key-column", "vid", "--label-key-column", "vid")
    assert done.returncode == 0, done.stderr
    assert read_any(tmp_path / "o.csv")["mos"].tolist() == ["3.0", "4.0"]


def test_unsupported_output_format_is_refused_before_reading(tmp_path: Path, mos) -> None:
    done = mos("--features", "nope.csv", "--labels", "nope.csv", "--out", "o.xlsx")
    assert done.returncode == 2 and "unsupported table format '.xlsx'" in done.stderr


def test_min_match_rate_outside_0_1_is_a_usage_error(tmp_path: Path, mos) -> None:
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
               "--min-match-rate", "1.5")
    assert done.returncode == 2 and "must be in [0, 1]" in done.stderr


def test_output_that_is_an_input_is_refused(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 3.0}])
    before = snapshot(tmp_path)
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "./f.csv")
    assert done.returncode == 2 and "would overwrite the input" in done.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "json"])
def test_provenance_describes_inputs_and_written_output(tmp_path: Path, mos, fmt: str) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}])
    write_table(tmp_path / "l.csv", [{"key": "a", "mos": 3.0}])
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", f"out/o.{fmt}",
               "--audit-json", "out/a.json")
    assert done.returncode == 0, done.stderr
    prov = json.loads((tmp_path / "out/a.json").read_text())["run_provenance"]
    assert prov["schema"] == "ai-run-provenance-v1"
    assert prov["inputs"]["features"]["kind"] == "file"
    assert prov["inputs"]["labels"][0]["path"] == "l.csv"
    written = (tmp_path / f"out/o.{fmt}").read_bytes()  # hashed while it was written
    assert prov["outputs"]["out"]["sha256"] == hashlib.sha256(written).hexdigest()
    assert prov["outputs"]["out"]["size"] == len(written)
    assert prov["outputs"]["audit_json"] == "out/a.json"
    assert {"python", "pandas", "pyarrow", "materializer"} <= set(prov["versions"])
    assert prov["args"] == dict(sorted(prov["args"].items()))
    assert prov["base_dir"] == str(tmp_path)


def test_source_column_holds_the_path_as_written(tmp_path: Path, mos) -> None:
    (tmp_path / "labels").mkdir()
    write_table(tmp_path / "f.csv", [{"key": "a"}])
    write_table(tmp_path / "labels/l.csv", [{"key": "a", "mos": 3.0}])
    mos("--features", "f.csv", "--labels", "labels/l.csv", "--out", "o.parquet")
    assert pd.read_parquet(tmp_path / "o.parquet").loc[0, "mos_label_source"] == "labels/l.csv"


def test_no_labels_at_all_is_an_error(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}])
    (tmp_path / "l.csv").write_text("key,mos\n,3.0\n")
    done = mos("--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet")
    assert done.returncode == 1 and "no MOS labels loaded" in done.stderr


def test_inference_runs_per_label_file(tmp_path: Path, mos) -> None:
    write_table(tmp_path / "f.csv", [{"key": "a"}, {"key": "b"}])
    write_table(tmp_path / "l1.csv", [{"video_id": "a", "mean_mos": 3.0}])
    write_table(tmp_path / "l2.json", [{"clip_id": "b", "quality": 4.0}])
    done = mos("--features", "f.csv", "--labels", "l1.csv", "--labels", "l2.json",
               "--out", "o.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out["mos"].tolist() == [3.0, 4.0]
    assert out["mos_label_source"].tolist() == ["l1.csv", "l2.json"]
    files = json.loads((tmp_path / "a.json").read_text())["label_files"]
    assert [f["key_column"] for f in files] == ["video_id", "clip_id"]
    assert not any(math.isnan(v) for v in out["mos_raw_0_100"])


def test_integer_columns_with_nulls_stay_integers(tmp_path: Path, mos) -> None:
    (tmp_path / "f.json").write_text(json.dumps([{"key": "a", "n": 1, "x": 40.0},
                                                 {"key": "b", "n": None, "x": 1.5}]))
    (tmp_path / "g.csv").write_text("key,n\na,1\nb,\n")
    (tmp_path / "l.csv").write_text("key,mos\na,3.0\nb,4.0\n")
    assert mos("--features", "f.json", "--labels", "l.csv", "--out", "o.parquet").returncode == 0
    schema = pq.read_schema(tmp_path / "o.parquet")
    assert schema.field("n").type == pa.int64() and schema.field("x").type == pa.float64()
    assert mos("--features", "g.csv", "--labels", "l.csv", "--out", "o.csv").returncode == 0
    assert (tmp_path / "o.csv").read_text().splitlines()[1:] == [
        "a,1,3.0,50.0,ok,l.csv", "b,,4.0,75.0,ok,l.csv"]
