"""Wrong training data with exit 0, and broken guarantees, found by a hostile user.

Each test is one defect of issue 17 as the commands show it: the smallest input that
showed it on the old main, and what must hold now. They run the real commands in a
fresh interpreter on files written for the case.
"""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_command, write_table
from rel_support import all_entries, tree, write_files

MOS = "materialize-mos-labels"
SO = "materialize-second-opinion-features"


def audit(path: Path) -> dict:
    return json.loads(path.read_text())


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# --- 1: the score field is chosen once per file, never row by row ---------------------


@pytest.mark.parametrize("sidecar", ["s.csv", "s.jsonl"])
def test_ground_truth_never_leaks_in_as_a_score(tmp_path: Path, sidecar: str) -> None:
    write_files(tmp_path, {
        "f.csv": "video_id\nc1\nc2\n",
        "s.csv": "competitor,video_id,score,mos\ndover,c1,0.61,4.2\ndover,c2,,3.1\n",
        "s.jsonl": '{"competitor": "dover", "video_id": "c1", "score": 0.61, "mos": 4.2}\n'
                   '{"competitor": "dover", "video_id": "c2", "score": null, "mos": 3.1}\n',
    })
    done = run_command(SO, "--features", "f.csv", "--scores", sidecar, "--out", "o.parquet",
                       "--audit-json", "a.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [r["second_opinion_dover_score"] for r in rows] == [0.61, None]
    assert [r["second_opinion_dover_status"] for r in rows] == ["ok", "missing"]
    figures = audit(tmp_path / "a.json")["competitors"]["dover"]
    assert figures["score_fields"] == ["score"] and figures["missing_rows"] == 1


# --- 2: list columns are never cut in CSV ---------------------------------------------


def test_list_column_to_csv_is_refused_not_abbreviated(tmp_path: Path) -> None:
    pq.write_table(pa.table({"key": ["a"], "emb": [[float(i) for i in range(2000)]]}),
                   tmp_path / "f.parquet")
    write_files(tmp_path, {"l.csv": "key,mos\na,3\n"})
    done = run_command(MOS, "--features", "f.parquet", "--labels", "l.csv", "--out", "o.csv",
                       cwd=tmp_path)
    assert done.returncode == 1
    line = one_line_error(done.stderr)
    assert "o.csv" in line and "'emb'" in line and "cannot hold" in line
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "o.csv.audit.json").exists()


# --- 3: JSON lines end at "\n" only ------------------------------------------------------


def test_jsonl_keys_with_unicode_line_separators_stay_whole(tmp_path: Path) -> None:
    key = "a\u0085b\u2028c"
    (tmp_path / "l.jsonl").write_text(json.dumps({"key": key, "mos": 2.0}, ensure_ascii=False)
                                      + "\n", encoding="utf-8")
    write_table(tmp_path / "f.csv", [{"key": "a,b,c"}, {"key": key}])
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.jsonl", "--out", "o.jsonl",
                       "--min-match-rate", "0.5", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [(r["key"], r["mos"]) for r in rows] == [("a,b,c", None), (key, 2.0)]


# --- 4: the status column cannot overwrite an output column ---------------------------


@pytest.mark.parametrize("name", ["mos", "mos_raw_0_100", "mos_label_source"])
def test_status_column_may_not_name_an_output_column(tmp_path: Path, name: str) -> None:
    write_files(tmp_path, {"f.csv": "key\na\n", "l.csv": "key,mos\na,3\n"})
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       "--status-column", name, cwd=tmp_path)
    assert done.returncode == 2
    assert f"--status-column {name!r} is one of the columns" in one_line_error(done.stderr)
    assert not (tmp_path / "o.csv").exists()


def test_manifest_refuses_a_status_column_that_is_an_output_column(tmp_path: Path) -> None:
    from materializer.manifest import ManifestError, load_manifest

    write_files(tmp_path, {"f.csv": "key\na\n", "l.csv": "key,mos\na,3\n"})
    data = {"defaults": {"status_column": "mos"},
            "tables": [{"id": "t", "features": "f.csv", "labels": ["l.csv"], "out": "o.csv"}]}
    with pytest.raises(ManifestError) as caught:
        load_manifest(data, manifest_path=str(tmp_path / "m.yaml"))
    assert any("status_column" in p and "'mos'" in p for p in caught.value.problems)


# --- 5: normalisation never merges two clips silently ---------------------------------


def test_two_folders_with_one_file_name_are_refused_unless_allowed(tmp_path: Path) -> None:
    write_files(tmp_path, {
        "f.csv": "path\n/corpusA/0001.mp4\n/corpusB/0001.mp4\n/corpusA/0002.mp4\n",
        "l.csv": "path,mos\n/corpusA/0001.mp4,4.5\n/corpusA/0002.mp4,2\n",
    })
    args = ["--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
            "--audit-json", "a.json"]
    done = run_command(MOS, *args, cwd=tmp_path)
    assert done.returncode == 1
    line = one_line_error(done.stderr)
    assert "'/corpusA/0001.mp4' and '/corpusB/0001.mp4' both become '0001.mp4'" in line
    assert "f.csv" in line and "pass --allow-key-merge" in line
    assert not (tmp_path / "o.csv").exists()

    allowed = run_command(MOS, *args, "--allow-key-merge", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    assert audit(tmp_path / "a.json")["merged_feature_keys"] == 1


def test_label_files_whose_paths_fold_together_are_refused(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": "path\n0001.mp4\n",
                           "l.csv": "path,mos\n/a/0001.mp4,4\n/b/0001.mp4,4\n"})
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       cwd=tmp_path)
    assert done.returncode == 1 and "l.csv" in done.stderr and "both become" in done.stderr


# --- 6 and 7: one scale per column, spread in the units of its MOS ----------------------


def test_std_dev_is_rescaled_with_its_mos(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": "key\na\nb\n",
                           "l.csv": "key,mos,mos_std_dev\na,80,20\nb,40,10\n"})
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
                       "--audit-json", "a.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "o.parquet").to_pylist()
    assert [(r["mos"], r["mos_std_dev"]) for r in rows] == [(4.2, 0.8), (2.6, 0.4)]
    assert audit(tmp_path / "a.json")["label_files"][0]["std_dev_rescaled_to_1_5"] is True


def test_one_typo_above_5_does_not_rescale_a_whole_file(tmp_path: Path) -> None:
    values = [3.1, 4.0, 2.2, 5.5, 1.9, 3.3, 4.4, 2.8]
    write_table(tmp_path / "l.csv", [{"key": f"k{i}", "mos": v} for i, v in enumerate(values)])
    write_table(tmp_path / "f.csv", [{"key": f"k{i}"} for i in range(len(values))])
    args = ["--features", "f.csv", "--labels", "l.csv", "--out", "o.csv"]
    done = run_command(MOS, *args, cwd=tmp_path)
    assert done.returncode == 1
    line = one_line_error(done.stderr)
    assert "cannot tell the MOS scale: 1 of 8 values are above 5" in line and "5.5" in line
    assert "--mos-scale" in line and not (tmp_path / "o.csv").exists()
    strict = run_command(MOS, *args, "--mos-scale", "1-5", cwd=tmp_path)
    assert strict.returncode == 1 and "outside the 1-5 scale" in strict.stderr


def test_label_spreads_that_are_not_numbers_or_disagree_are_errors(tmp_path: Path) -> None:
    """Found attacking further: ``n/a`` became an unknown spread silently, a negative
    spread passed, and a second file's different spread for the same MOS was dropped."""
    write_files(tmp_path, {"f.csv": "key\na\nb\n",
                           "bad.csv": "key,mos,mos_std_dev\na,3,n/a\nb,4,0.5\n",
                           "neg.csv": "key,mos,n_ratings\na,3,-2\nb,4,20\n",
                           "one.csv": "key,mos,mos_std_dev\na,3,0.5\nb,4,0.5\n",
                           "two.csv": "key,mos,mos_std_dev\na,3,0.7\n"})
    cases = {("bad.csv",): "bad.csv: column 'mos_std_dev': key 'a': value 'n/a' is not",
             ("neg.csv",): "neg.csv: column 'n_ratings': key 'a': value '-2' is not",
             ("one.csv", "two.csv"): "two.csv: key 'a': conflicting mos_std_dev: 0.5 in "
                                     "one.csv vs 0.7 in two.csv"}
    for labels, expected in cases.items():
        args = [arg for label in labels for arg in ("--labels", label)]
        done = run_command(MOS, "--features", "f.csv", *args, "--out", "o.csv", cwd=tmp_path)
        assert done.returncode == 1 and expected in one_line_error(done.stderr), done.stderr
        assert not (tmp_path / "o.csv").exists()


# --- 8: CSV cells come back as written --------------------------------------------------


CELLS = "key,scene,flag,codec,x,n\na,0042,TRUE,NA,1.50,7\nb,0001,FALSE,None,,8\n"


def test_csv_to_csv_returns_every_cell_as_written(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": CELLS, "l.csv": "key,mos\na,3\nb,4\n"})
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(tmp_path / "o.csv", dtype=str, keep_default_na=False)
    original = pd.read_csv(tmp_path / "f.csv", dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(written[original.columns], original)


def test_csv_to_parquet_types_follow_the_documented_rule(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": CELLS, "l.csv": "key,mos\na,3\nb,4\n"})
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.parquet",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.select(["scene", "flag", "codec", "x", "n"]).to_pylist() == [
        {"scene": "0042", "flag": "TRUE", "codec": "NA", "x": 1.5, "n": 7},
        {"scene": "0001", "flag": "FALSE", "codec": "None", "x": None, "n": 8}]
    assert table.schema.field("x").type == pa.float64()
    assert table.schema.field("n").type == pa.int64()


# --- 9: one key rule for the streamed and the in-memory join ---------------------------


@pytest.mark.parametrize("stream", ["never", "always"])
def test_float_keys_match_the_same_way_streamed_or_not(tmp_path: Path, stream: str) -> None:
    pq.write_table(pa.table({"clip_id": [101.0, 102.0, 1.5, 2.5]}), tmp_path / "f.parquet")
    write_files(tmp_path, {"l.csv": "clip_id,mos\n101,3\n102,4\n1.5,2\n2.5,1\n"})
    env = {**os.environ, "MATERIALIZER_STREAM": stream, "MATERIALIZER_BATCH_ROWS": "2"}
    done = subprocess.run(
        [str(Path(os.sys.executable).parent / MOS), "--features", "f.parquet", "--labels",
         "l.csv", "--out", "o.parquet", "--audit-json", "a.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    found = audit(tmp_path / "a.json")
    assert found["match_rate"] == 1.0 and ("streamed" in found) == (stream == "always")
    assert pq.read_table(tmp_path / "o.parquet").column("mos").to_pylist() == [3, 4, 2, 1]


# --- 10: a competitor that matches nothing fails; runtimes are not negative -------------


def test_competitor_matching_no_row_fails_the_table(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": "video_id\nclip1\nclip2\n",
                           "s.csv": "competitor,video_id,score\nq,CLIP1,1\nq,CLIP2,2\n"})
    done = run_command(SO, "--features", "f.csv", "--scores", "s.csv", "--out", "o.csv",
                       cwd=tmp_path)
    assert done.returncode == 1
    line = one_line_error(done.stderr)
    assert "competitor 'q' scores 0 of 2 feature rows" in line and "'CLIP1'" in line
    assert not (tmp_path / "o.csv").exists()


def test_min_coverage_is_a_stricter_gate_per_competitor(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": "video_id\nclip1\nclip2\n",
                           "s.csv": "competitor,video_id,score\nq,clip1,1\n"})
    args = ["--features", "f.csv", "--scores", "s.csv", "--out", "o.csv", "--audit-json",
            "a.json"]
    assert run_command(SO, *args, cwd=tmp_path).returncode == 0
    assert audit(tmp_path / "a.json")["competitors"]["q"]["coverage"] == 0.5
    (tmp_path / "o.csv").unlink()
    done = run_command(SO, *args, "--min-coverage", "0.9", cwd=tmp_path)
    assert done.returncode == 1 and "coverage 0.500, --min-coverage 0.900" in done.stderr
    assert not (tmp_path / "o.csv").exists()


def test_negative_runtime_is_an_error(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": "video_id\nclip1\n",
                           "s.jsonl": '{"competitor": "q", "video_id": "clip1", "score": 1, '
                                      '"runtime_ms": -5}\n'})
    done = run_command(SO, "--features", "f.csv", "--scores", "s.jsonl", "--out", "o.csv",
                       cwd=tmp_path)
    assert done.returncode == 1
    assert "runtime -5 is not a finite number >= 0" in one_line_error(done.stderr)


# --- 13, 14, 20: outputs that would destroy each other --------------------------------


def test_audit_path_that_is_a_folder_publishes_nothing(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": "key\na\n", "l.csv": "key,mos\na,3\n"})
    (tmp_path / "adir.json").mkdir()
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       "--audit-json", "adir.json", cwd=tmp_path)
    assert done.returncode == 2
    assert one_line_error(done.stderr).startswith(f"{MOS}: error: adir.json: ")
    assert not (tmp_path / "o.csv").exists()


def test_out_that_is_a_folder_is_named_as_the_culprit(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": "key\na\n", "l.csv": "key,mos\na,3\n"})
    (tmp_path / "o.csv").mkdir()
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       "--audit-json", "a.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "o.csv: is an existing folder" in one_line_error(done.stderr)
    assert not (tmp_path / "a.json").exists()


@pytest.mark.parametrize(("out", "audit_json"), [("same.json", "same.json"),
                                                 ("x/../same.csv", "same.csv")])
def test_table_and_audit_may_not_be_one_file(tmp_path: Path, out: str, audit_json: str) -> None:
    write_files(tmp_path, {"f.csv": "key\na\n", "l.csv": "key,mos\na,3\n"})
    (tmp_path / "x").mkdir()
    before = all_entries(tmp_path)
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", out,
                       "--audit-json", audit_json, cwd=tmp_path)
    assert done.returncode == 2 and "the table and its audit are the same file" in done.stderr
    assert all_entries(tmp_path) == before


def test_failed_audit_rename_leaves_the_previous_table(tmp_path: Path) -> None:
    """Both published or neither, even when the audit's rename itself fails.

    The audit's temporary file lies on another filesystem than its target (/dev/shm),
    so its rename fails with EXDEV after the table's rename succeeded.
    """
    from materializer import files

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem at /dev/shm")
    (tmp_path / "o.csv").write_text("old\n")
    table_temp = tmp_path / ".o.tmp"
    table_temp.write_text("new\n")
    audit_temp = shm / f".{tmp_path.name}.audit.tmp"
    audit_temp.write_text("{}\n")
    try:
        with pytest.raises(files.DataError, match="cannot publish"):
            files.commit_outputs([(table_temp, tmp_path / "o.csv"),
                                  (audit_temp, tmp_path / "a.json")])
    finally:
        audit_temp.unlink(missing_ok=True)
    assert (tmp_path / "o.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv"]  # no link left behind


def test_concurrent_runs_never_pair_one_runs_audit_with_anothers_table(tmp_path: Path) -> None:
    """A commit holds a lock on the output folder, so two runs publishing one table
    cannot interleave their renames: while another holder has the lock, nothing moves."""
    import fcntl

    from rel_support import wait_for

    from materializer.provenance import sha256_file

    write_files(tmp_path, {"f.csv": "key\na\n", "l.csv": "key,mos\na,3\n"})
    (tmp_path / "out").mkdir()
    fd = os.open(tmp_path / "out", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        process = subprocess.Popen(
            [str(Path(os.sys.executable).parent / MOS), "--features", "f.csv", "--labels",
             "l.csv", "--out", "out/o.csv", "--audit-json", "out/a.json"], cwd=tmp_path,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        both_ready = lambda: len(list((tmp_path / "out").glob(".*.tmp"))) == 2  # noqa: E731
        assert wait_for(both_ready, timeout=60), "the run never reached its commit"
        assert process.poll() is None and not (tmp_path / "out" / "o.csv").exists()
    finally:
        os.close(fd)
    assert process.wait(timeout=60) == 0, process.stderr.read()
    cited = audit(tmp_path / "out" / "a.json")["run_provenance"]["outputs"]["out"]["sha256"]
    assert cited == sha256_file(tmp_path / "out" / "o.csv")


# --- 16, 17: files that are not tables ------------------------------------------------


@pytest.mark.parametrize("special", ["fifo", "dev-zero"])
def test_special_files_are_refused_before_reading(tmp_path: Path, special: str) -> None:
    write_files(tmp_path, {"f.csv": "key\na\n"})
    if special == "fifo":
        os.mkfifo(tmp_path / "l.csv")
    else:
        (tmp_path / "l.csv").symlink_to("/dev/zero")
    done = subprocess.run(
        [str(Path(os.sys.executable).parent / MOS), "--features", "f.csv", "--labels",
         "l.csv", "--out", "o.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=60,
        check=False)
    assert done.returncode == 1
    assert "l.csv: is not a regular file" in one_line_error(done.stderr)


def test_unclosed_quote_in_a_large_header_is_one_clear_error(tmp_path: Path) -> None:
    write_files(tmp_path, {"f.csv": 'key,"x\n' + "a,1\n" * 40_000, "l.csv": "key,mos\na,3\n"})
    assert (tmp_path / "f.csv").stat().st_size > 128 * 1024
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       cwd=tmp_path)
    assert done.returncode == 1
    assert "f.csv: cannot read table" in one_line_error(done.stderr)


# --- 19: Unicode forms and Windows paths ----------------------------------------------


def test_nfd_and_nfc_names_and_windows_paths_match(tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "café.mp4")
    write_table(tmp_path / "f.csv", [{"path": nfd}, {"path": "C:\\data\\b.mp4"}])
    write_table(tmp_path / "l.csv", [{"path": "café.mp4", "mos": 3}, {"path": "b.mp4", "mos": 4}])
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       "--audit-json", "a.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert audit(tmp_path / "a.json")["match_rate"] == 1.0
    written = pd.read_csv(tmp_path / "o.csv", dtype=str)
    assert written["path"].tolist() == [nfd, "C:\\data\\b.mp4"]  # the key text as written


def test_unmatched_keys_are_shown_with_escapes(tmp_path: Path) -> None:
    # "x" + COMBINING ACUTE has no composed form: NFC keeps it, and it prints like "x".
    write_table(tmp_path / "f.csv", [{"key": "clipx\u0301"}])
    write_table(tmp_path / "l.csv", [{"key": "clipx", "mos": 3}])
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "o.csv",
                       cwd=tmp_path)
    assert done.returncode == 1 and "'clipx\\u0301'" in one_line_error(done.stderr)


def test_inputs_are_left_byte_identical_by_every_refusal(tmp_path: Path) -> None:
    """The refusals above write nothing and touch no input (one representative run)."""
    write_files(tmp_path, {"f.csv": "path\n/a/1.mp4\n/b/1.mp4\n", "l.csv": "path,mos\n1.mp4,3\n"})
    before = tree(tmp_path)
    done = run_command(MOS, "--features", "f.csv", "--labels", "l.csv", "--out", "out/o.csv",
                       cwd=tmp_path)
    assert done.returncode == 1 and tree(tmp_path) == before
