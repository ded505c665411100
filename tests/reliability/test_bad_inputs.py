"""A battery of bad inputs through both commands, as a user runs them.

Every case must exit non-zero with one line on stderr that names the file (and column,
key, value where they apply), print no traceback, create no output (not even its folder)
and leave every input byte-identical.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from conftest import Result, run_command
from rel_support import all_entries, parquet_bytes, tree, write_files

FEATURES_CSV = "key,x\na,1\nb,2\n"
LABELS_CSV = "key,mos\na,3.5\nb,4\n"
GOOD_PARQUET = parquet_bytes([{"key": "a", "x": 1.0}, {"key": "b", "x": 2.0}])
SO_FEATURES = "video_id,x\nclip1,1\nclip2,2\n"


def jsonl(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Case:
    """One bad input: files to write, the command's arguments, what stderr must say."""

    id: str
    files: dict[str, bytes | str]
    args: list[str]
    expect: list[str]
    command: str = "materialize-mos-labels"
    exit_code: int = 1


def mos_case(id: str, expect: list[str], *, features: str = "f.csv",
             labels: tuple[str, ...] = ("l.csv",), files: dict | None = None,
             flags: tuple[str, ...] = (), exit_code: int = 1) -> Case:
    written: dict[str, bytes | str] = {"f.csv": FEATURES_CSV, "l.csv": LABELS_CSV}
    written.update(files or {})
    args = ["--features", features]
    for label in labels:
        args += ["--labels", label]
    args += ["--out", "out/o.parquet", "--audit-json", "out/a.json", *flags]
    return Case(id, written, args, expect, exit_code=exit_code)


def so_case(id: str, expect: list[str], *, scores: tuple[str, ...] = ("s.jsonl",),
            files: dict | None = None, flags: tuple[str, ...] = (), features: str = "f.csv",
            exit_code: int = 1) -> Case:
    written: dict[str, bytes | str] = {"f.csv": SO_FEATURES}
    written.update(files or {})
    args = ["--features", features]
    for spec in scores:
        args += ["--scores", spec]
    args += ["--out", "out/o.jsonl", "--audit-json", "out/a.json", *flags]
    return Case(id, written, args, expect, command="materialize-second-opinion-features",
                exit_code=exit_code)


def score(clip: str, value=71.0, competitor: str = "dover", **more) -> dict:
    return {"competitor": competitor, "video_id": clip, "score": value, **more}


CASES = [
    # --- unreadable files ------------------------------------------------------------
    mos_case("parquet-random-bytes", ["f.parquet", "cannot read table"],
             features="f.parquet", files={"f.parquet": b"\x00garbage" * 40}),
    mos_case("parquet-truncated-half", ["f.parquet", "cannot read table"],
             features="f.parquet", files={"f.parquet": GOOD_PARQUET[: len(GOOD_PARQUET) // 2]}),
    mos_case("parquet-missing-footer-bytes", ["f.parquet", "cannot read table"],
             features="f.parquet", files={"f.parquet": GOOD_PARQUET[:-3]}),
    mos_case("parquet-empty-file", ["f.parquet", "cannot read table"],
             features="f.parquet", files={"f.parquet": b""}),
    mos_case("labels-parquet-truncated", ["l.parquet", "cannot read table"],
             labels=("l.parquet",),
             files={"l.parquet": parquet_bytes([{"key": "a", "mos": 3.0}])[:-40]}),
    mos_case("csv-unclosed-quote", ["l.csv", "cannot read table", "EOF inside string"],
             files={"l.csv": 'key,mos\n"a,3.5\nb,4\n'}),
    mos_case("csv-ragged-row", ["l.csv", "cannot read table", "Expected 2 fields"],
             files={"l.csv": "key,mos\na,3.5\nb,4,5\n"}),
    mos_case("csv-first-row-too-long", ["l.csv", "more fields than the header"],
             files={"l.csv": "key,mos\na,3.5,9,9\nb,4\n"}),
    mos_case("csv-quote-inside-field", ["l.csv", "column 'mos'", "key 'a'", "'3x\"'",
                                        "not a finite number"],
             files={"l.csv": 'key,mos\na,"3"x"\nb,4\n'}),
    mos_case("csv-duplicate-header", ["f.csv", "column 'x'", "duplicate column names: x"],
             files={"f.csv": "key,x,x\na,1,2\nb,2,3\n"}),
    mos_case("csv-not-utf8", ["f.csv", "not valid UTF-8"],
             files={"f.csv": b"key,x\n\xe9a,1\nb,2\n"}),
    mos_case("csv-not-utf8-in-header", ["f.csv", "not valid UTF-8"],
             files={"f.csv": b"k\xffey,x\na,1\n"}),
    mos_case("jsonl-not-utf8", ["l.jsonl", "not valid UTF-8"], labels=("l.jsonl",),
             files={"l.jsonl": b'{"key": "a", "mos": 3}\n{"key": "\xe9", "mos": 4}\n'}),
    mos_case("json-not-utf8", ["l.json", "not valid UTF-8"], labels=("l.json",),
             files={"l.json": b'[{"key": "\xff", "mos": 3}]'}),
    mos_case("json-object-not-rows", ["l.json", "must be a list of rows"], labels=("l.json",),
             files={"l.json": json.dumps({"key": "a", "mos": 3})}),
    mos_case("json-rows-not-a-list", ["l.json", "must be a list of rows"], labels=("l.json",),
             files={"l.json": json.dumps({"rows": {"key": "a", "mos": 3}})}),
    mos_case("json-scalar", ["l.json", "must be a list of rows"], labels=("l.json",),
             files={"l.json": "42"}),
    mos_case("json-list-of-numbers", ["l.json", "every JSON row must be an object"],
             labels=("l.json",), files={"l.json": "[1, 2]"}),
    mos_case("json-syntax-error", ["l.json", "not valid JSON"], labels=("l.json",),
             files={"l.json": '[{"key": "a", "mos": 3}'}),
    mos_case("jsonl-line-does-not-parse", ["l.jsonl", "line 2 is not valid JSON"],
             labels=("l.jsonl",), files={"l.jsonl": '{"key": "a", "mos": 3}\n{"key": "b",\n'}),
    mos_case("jsonl-line-is-an-array", ["l.jsonl", "line 2 is not a JSON object"],
             labels=("l.jsonl",), files={"l.jsonl": '{"key": "a", "mos": 3}\n[1, 2]\n'}),
    mos_case("empty-features-csv", ["f.csv", "file is empty"], files={"f.csv": ""}),
    mos_case("empty-labels-jsonl", ["l.jsonl", "file is empty"], labels=("l.jsonl",),
             files={"l.jsonl": ""}),
    mos_case("empty-labels-json", ["l.json", "file is empty"], labels=("l.json",),
             files={"l.json": "  \n"}),
    mos_case("blank-line-csv", ["l.csv", "file is empty"], files={"l.csv": "\n"}),
    mos_case("labels-header-only", ["l.csv", "no MOS labels loaded"],
             files={"l.csv": "key,mos\n"}),
    mos_case("features-not-found", ["nope.csv", "file not found"], features="nope.csv"),
    mos_case("labels-is-a-directory", ["d.csv", "directory"], labels=("d.csv",),
             files={"d.csv/keep.txt": "x"}),
    # --- columns ---------------------------------------------------------------------
    mos_case("features-no-key-column", ["f.csv", "could not infer --feature-key-column"],
             files={"f.csv": "clip,x\na,1\n"}, exit_code=2),
    mos_case("features-explicit-key-absent", ["f.csv", "'clip'", "is not present"],
             flags=("--feature-key-column", "clip"), exit_code=2),
    mos_case("labels-no-mos-column", ["l.csv", "could not infer --label-mos-column"],
             files={"l.csv": "key,rating\na,3\n"}, exit_code=2),
    mos_case("labels-empty-json-list", ["l.json", "could not infer --label-key-column"],
             labels=("l.json",), files={"l.json": "[]"}, exit_code=2),
    mos_case("existing-target-columns", ["f.csv", "refusing to overwrite", "'mos'"],
             files={"f.csv": "key,mos\na,1\nb,2\n"}),
    # --- MOS values ------------------------------------------------------------------
    mos_case("mos-not-numeric", ["l.csv", "column 'mos'", "key 'b'", "'good'"],
             files={"l.csv": "key,mos\na,3\nb,good\n"}),
    mos_case("mos-nan", ["l.csv", "column 'mos'", "key 'b'", "not a finite number"],
             files={"l.csv": "key,mos\na,3\nb,NaN\n"}),
    mos_case("mos-blank", ["l.csv", "column 'mos'", "key 'a'", "not a finite number"],
             files={"l.csv": "key,mos\na,\nb,4\n"}),
    mos_case("mos-infinite-csv", ["l.csv", "key 'a'", "not a finite number"],
             files={"l.csv": "key,mos\na,inf\nb,4\n"}),
    mos_case("mos-infinite-parquet", ["l.parquet", "key 'b'", "not a finite number"],
             labels=("l.parquet",), files={"l.parquet": parquet_bytes(
                 [{"key": "a", "mos": 3.0}, {"key": "b", "mos": float("-inf")}])}),
    mos_case("mos-json-null", ["l.json", "key 'a'", "None", "not a finite number"],
             labels=("l.json",), files={"l.json": json.dumps([{"key": "a", "mos": None}])}),
    mos_case("mos-boolean", ["l.jsonl", "column 'mos'", "booleans"], labels=("l.jsonl",),
             files={"l.jsonl": jsonl({"key": "a", "mos": True}, {"key": "b", "mos": False})}),
    mos_case("mos-above-100", ["l.csv", "key 'b'", "120", "outside the 0-100 scale"],
             files={"l.csv": "key,mos\na,30\nb,120\n"}),
    mos_case("mos-below-1-on-1-5", ["l.csv", "key 'a'", "0.5", "outside the 1-5 scale"],
             files={"l.csv": "key,mos\na,0.5\nb,4\n"}),
    mos_case("mos-negative-raw", ["l.csv", "column 'mos_raw_0_100'", "key 'a'", "-1.0",
                                  "outside the 0-100 scale"],
             files={"l.csv": "key,mos_raw_0_100\na,-1\nb,40\n"}),
    mos_case("mos-forced-scale-contradiction", ["l.csv", "key 'b'", "outside the 1-5 scale"],
             files={"l.csv": "key,mos\na,3\nb,40\n"}, flags=("--mos-scale", "1-5")),
    mos_case("conflicting-labels-one-file", ["l.csv", "key 'a'", "conflicting MOS labels",
                                             "3.0", "4.0"],
             files={"l.csv": "key,mos\na,3\nb,4\na,4\n"}),
    mos_case("conflicting-labels-two-files", ["m.csv", "key 'b'", "conflicting MOS labels",
                                              "in l.csv", "in m.csv"],
             labels=("l.csv", "m.csv"), files={"m.csv": "key,mos\nb,2\n"}),
    mos_case("label-keys-all-null", ["l.csv", "no MOS labels loaded"],
             files={"l.csv": "key,mos\n,3\n  ,4\n"}),
    mos_case("feature-keys-all-null", ["f.csv", "match rate 0.000", "(0/2 keys; 2 rows without"],
             files={"f.csv": "key,x\n,1\n,2\n"}),
    mos_case("feature-keys-half-null", ["f.csv", "match rate 0.500", "(1/2 keys; 1 rows without"],
             files={"f.csv": "key,x\na,1\n,2\n"}),
    mos_case("regex-keys-nothing", ["f.csv", "match rate 0.000"],
             flags=("--feature-key-regex", "(z+)")),
    mos_case("list-typed-key-column", ["f.parquet", "column 'key'", "list<"],
             features="f.parquet", files={"f.parquet": parquet_bytes(
                 pd.DataFrame({"key": [["a"], ["b"]], "x": [1.0, 2.0]}))}),
    Case("infinite-feature-to-jsonl", {"f.parquet": parquet_bytes(
        [{"key": "a", "x": float("inf")}, {"key": "b", "x": 1.0}]), "l.csv": LABELS_CSV},
         ["--features", "f.parquet", "--labels", "l.csv", "--out", "out/o.jsonl"],
         ["out/o.jsonl", "column 'x'", "infinite value"]),
    # --- usage -----------------------------------------------------------------------
    mos_case("invalid-regex", ["--label-key-regex", "'([0-9'", "not a valid regular expression"],
             flags=("--label-key-regex", "([0-9"), exit_code=2),
    mos_case("unsupported-label-format", ["l.h5", "unknown table format '.h5'"],
             labels=("l.h5",), files={"l.h5": "x"}, exit_code=2),
    Case("output-is-the-input", {"f.csv": FEATURES_CSV, "l.csv": LABELS_CSV},
         ["--features", "f.csv", "--labels", "l.csv", "--out", "./f.csv"],
         ["./f.csv", "would overwrite the input f.csv"], exit_code=2),
    Case("audit-is-a-label-file", {"f.csv": FEATURES_CSV, "l.csv": LABELS_CSV},
         ["--features", "f.csv", "--labels", "l.csv", "--out", "out/o.csv", "--audit-json",
          "l.csv"], ["would overwrite the input l.csv"], exit_code=2),
    # --- second-opinion sidecars -----------------------------------------------------
    so_case("score-row-without-score-or-frames", ["s.jsonl", "key 'clip2'",
                                                  "neither a score field nor non-empty frames"],
            files={"s.jsonl": jsonl({"competitor": "dover", "video_id": "clip2",
                                     "runtime_ms": 3})}),
    so_case("score-row-with-empty-frames", ["s.json", "key 'clip1'", "neither a score field"],
            scores=("s.json",), files={"s.json": json.dumps(
                {"rows": [{"competitor": "q", "video_id": "clip1", "frames": []}]})}),
    so_case("frames-entry-not-object", ["s.json", "key 'clip1'", "frames[] entries"],
            scores=("s.json",), files={"s.json": json.dumps(
                [{"competitor": "q", "video_id": "clip1", "frames": [3, 4]}])}),
    so_case("frames-entry-without-score", ["s.json", "key 'clip1'", "no score field"],
            scores=("s.json",), files={"s.json": json.dumps(
                [{"competitor": "q", "video_id": "clip1", "frames": [{"x": 1}]}])}),
    so_case("score-not-numeric", ["s.jsonl", "key 'clip1'", "'high'", "not a finite number"],
            files={"s.jsonl": jsonl(score("clip1", "high"))}),
    so_case("score-infinite", ["s.jsonl", "key 'clip1'", "not a finite number"],
            files={"s.jsonl": '{"competitor": "d", "video_id": "clip1", "score": Infinity}\n'}),
    so_case("score-nan-csv", ["s.csv", "key 'clip1'", "neither a score field"], scores=("s.csv",),
            files={"s.csv": "competitor,video_id,score\nd,clip1,nan\nd,clip2,nan\n"}),
    so_case("duplicate-competitor-key", ["s.jsonl", "key 'clip1'", "duplicate score", "'dover'"],
            files={"s.jsonl": jsonl(score("clip1"), score("clip1", 72.0))}),
    so_case("duplicate-across-files", ["t.jsonl", "key 'clip2'", "duplicate score"],
            scores=("s.jsonl", "t.jsonl"),
            files={"s.jsonl": jsonl(score("clip2")), "t.jsonl": jsonl(score("clip2"))}),
    so_case("no-competitor", ["s.jsonl", "key 'clip1'", "no competitor field"],
            files={"s.jsonl": jsonl({"video_id": "clip1", "score": 3})}),
    # Names from the score rows: a clash is bad data (exit 1).
    so_case("competitor-slug-clash", ["'DOVER-x'", "'dover x'", "second_opinion_dover_x_*"],
            files={"s.jsonl": jsonl(score("clip1", competitor="DOVER-x"),
                                    score("clip1", competitor="dover x"))}, exit_code=1),
    so_case("score-rows-without-key", ["s.jsonl", "no key field"],
            files={"s.jsonl": jsonl({"competitor": "d", "clip": "clip1", "score": 3})}),
    so_case("score-key-field-absent", ["s.jsonl", "--score-key-field 'clip'", "not present"],
            files={"s.jsonl": jsonl(score("clip1"))}, flags=("--score-key-field", "clip"),
            exit_code=2),
    so_case("score-jsonl-broken-line", ["s.jsonl", "line 1 is not valid JSON"],
            files={"s.jsonl": '{"competitor": d}\n'}),
    so_case("score-json-scalar", ["s.json", "score JSON must be a list"], scores=("s.json",),
            files={"s.json": '"dover"'}),
    so_case("score-json-row-not-object", ["s.json", "rows[1] must be a JSON object"],
            scores=("s.json",), files={"s.json": json.dumps([score("clip1"), "clip2"])}),
    so_case("score-empty-file", ["s.jsonl", "file is empty"], files={"s.jsonl": ""}),
    so_case("score-empty-list", ["s.json", "no score rows"], scores=("s.json",),
            files={"s.json": "[]"}),
    so_case("score-csv-broken-quoting", ["s.csv", "cannot read table"], scores=("s.csv",),
            files={"s.csv": 'competitor,video_id,score\n"d,clip1,3\n'}),
    so_case("score-parquet-corrupt", ["s.parquet", "cannot read table"], scores=("s.parquet",),
            files={"s.parquet": b"PAR1" + b"\x00" * 64}),
    so_case("score-not-utf8", ["s.jsonl", "not valid UTF-8"],
            files={"s.jsonl": b'{"competitor": "d\xe9", "video_id": "clip1", "score": 3}\n'}),
    so_case("missing-policy-fail", ["f.csv", "missing second-opinion scores", "dover=1"],
            files={"s.jsonl": jsonl(score("clip1"))}, flags=("--missing-policy", "fail")),
    so_case("existing-score-columns", ["f.csv", "refusing to overwrite",
                                       "second_opinion_dover_score"],
            files={"f.csv": "video_id,second_opinion_dover_score\nclip1,1\n",
                   "s.jsonl": jsonl(score("clip1"))}),
    so_case("features-without-score-key", ["f.csv", "could not infer --key-column"],
            files={"f.csv": "clip,x\nclip1,1\n", "s.jsonl": jsonl(score("clip1"))}, exit_code=2),
    so_case("score-out-unsupported", ["s.h5", "unknown table format '.h5'"],
            scores=("s.h5",), files={"s.h5": "x"}, exit_code=2),
]


@dataclass
class Outcome:
    done: Result
    before: dict[str, bytes]
    after: dict[str, bytes]
    entries_before: set[str]
    entries_after: set[str]


def run_case(folder: Path, case: Case) -> Outcome:
    folder.mkdir()
    write_files(folder, case.files)
    before, entries = tree(folder), all_entries(folder)
    done = run_command(case.command, *case.args, cwd=folder)
    return Outcome(done, before, tree(folder), entries, all_entries(folder))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Every case run once, a few at a time (each is a fresh interpreter, mostly start-up)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        futures = {c.id: pool.submit(run_case, root / c.id, c) for c in CASES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(outcomes: dict[str, Outcome], case: Case) -> None:
    outcome = outcomes[case.id]
    done = outcome.done
    lines = done.stderr.strip().splitlines()
    assert done.returncode == case.exit_code, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"{case.command}: error: ")
    for text in case.expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert outcome.after == outcome.before  # every input byte-identical
    assert outcome.entries_after == outcome.entries_before  # no output, folder or temp file


def test_battery_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
