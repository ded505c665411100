"""Property tests: random tables, keys, duplicates, nulls and formats against a reference join.

The joins run in-process (the library the commands call) with ``base_dir`` set to a fresh
temporary folder. The reference is a plain pandas merge on keys normalised the documented
way (text as written, stripped; null or blank means no key). Every input row must come out,
in order, with exactly the reference's values, in every output format.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from materializer.errors import MaterializeError
from materializer.mos import materialize_mos_labels
from materializer.options import MosOptions, SecondOpinionOptions
from materializer.provenance import RunContext
from materializer.second_opinion import materialize_second_opinion

FORMATS = ("csv", "jsonl", "json", "parquet")
# Text keys that a careless reader would turn into numbers, dates or nulls, or pad.
KEY_POOL = ["a", "b", "007", "7", "1.50", "2024-01-02", " c ", "NA", "x/y.mp4", "é", "TRUE"]
KEYS = st.one_of(st.sampled_from(KEY_POOL), st.none(), st.just(""), st.just("  "))
MOS_VALUES = st.integers(100, 500).map(lambda n: n / 100)  # 1.00 .. 5.00, exact in text
SCORES = st.integers(-500, 10_000).map(lambda n: n / 8)  # exact in binary and in text

PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])


def write_rows(path: Path, rows: list[dict], fmt: str) -> str:
    """Write rows as the format says; keys stay text (or null) in every format."""
    frame = pd.DataFrame(rows)
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    return path.name


def normalised(key: object) -> str | None:
    """The documented raw normalisation: text as written, stripped; blank is no key."""
    if not isinstance(key, str) or not key.strip():
        return None
    return key.strip()


def read_back(path: Path) -> pd.DataFrame:
    """An output table as plain values (CSV cells as text, then compared as numbers)."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if path.suffix == ".jsonl":
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    return pd.DataFrame(json.loads(path.read_text())["rows"])


def numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values.replace("", None), errors="coerce").to_numpy(dtype=float)


def texts(values: pd.Series) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            for v in values.tolist()]


# --- MOS labels ----------------------------------------------------------------------------


@st.composite
def mos_case(draw):
    feature_keys = draw(st.lists(KEYS, min_size=1, max_size=12))  # JSON has no empty header
    labelled = draw(st.dictionaries(st.sampled_from(KEY_POOL), MOS_VALUES, min_size=1,
                                    max_size=8))
    label_rows = [{"key": k, "mos": v} for k, v in labelled.items()]
    # identical duplicates (the same key and MOS again) and rows without a key
    label_rows += [dict(r) for r in draw(st.lists(st.sampled_from(label_rows), max_size=3))]
    label_rows += [{"key": None, "mos": 3.0}] * draw(st.integers(0, 2))
    order = draw(st.permutations(range(len(label_rows))))
    split = draw(st.integers(0, len(label_rows)))  # labels spread over one or two files
    rows = [label_rows[i] for i in order]
    return {
        "features": [{"key": k, "n": i, "x": i / 4} for i, k in enumerate(feature_keys)],
        "label_files": [part for part in (rows[:split], rows[split:]) if part],
        "formats": draw(st.tuples(*[st.sampled_from(FORMATS)] * 4)),
    }


def reference_mos(features: list[dict], label_files: list[list[dict]]) -> pd.DataFrame:
    labels = pd.DataFrame([r for part in label_files for r in part])
    labels["key"] = labels["key"].map(normalised)
    labels = labels.dropna(subset=["key"]).drop_duplicates("key")
    frame = pd.DataFrame(features, columns=["key", "n", "x"])
    frame["join_key"] = frame["key"].map(normalised)
    merged = frame.merge(labels.rename(columns={"key": "join_key"}), on="join_key",
                         how="left", validate="many_to_one")
    merged["status"] = np.where(merged["mos"].notna(), "ok", "missing-label")
    return merged


@PROPERTY_SETTINGS
@given(case=mos_case())
def test_mos_join_equals_reference_join_in_every_format(case) -> None:
    feature_fmt, label_fmt, out_fmt, again_fmt = case["formats"]
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        features = write_rows(base / f"features.{feature_fmt}", case["features"], feature_fmt)
        labels = [write_rows(base / f"labels{i}.{label_fmt}", rows, label_fmt)
                  for i, rows in enumerate(case["label_files"])]
        run = RunContext("property-test", base_dir=folder)
        options = MosOptions(min_match_rate=0.0, feature_key_column="key",
                             label_key_column="key", label_mos_column="mos")
        audit = materialize_mos_labels(features, labels, f"out.{out_fmt}",
                                       audit_json="out.audit.json", options=options, run=run)
        expected = reference_mos(case["features"], case["label_files"])
        out = read_back(base / f"out.{out_fmt}")
        assert len(out) == len(expected) == audit["output_rows"] == audit["input_rows"]
        if not len(out):
            return
        assert numbers(out["n"]).tolist() == list(range(len(expected)))  # every row, in order
        np.testing.assert_array_equal(numbers(out["mos"]), expected["mos"].to_numpy(float))
        np.testing.assert_allclose(numbers(out["mos_raw_0_100"]),
                                   (expected["mos"].to_numpy(float) - 1) * 25)
        assert texts(out["mos_label_status"]) == expected["status"].tolist()
        assert audit["matched_rows"] == int((expected["status"] == "ok").sum())

        # Round trip: the output, read as features and joined again into another format,
        # gives the same labels (and the same feature columns).
        again = materialize_mos_labels(f"out.{out_fmt}", labels, f"again.{again_fmt}",
                                       options=MosOptions(**{**options.as_dict(),
                                                             "overwrite": True}), run=run)
        second = read_back(base / f"again.{again_fmt}")
        assert again["output_rows"] == len(expected)
        assert numbers(second["n"]).tolist() == list(range(len(expected)))
        np.testing.assert_array_equal(numbers(second["x"]), expected["x"].to_numpy(float))
        np.testing.assert_array_equal(numbers(second["mos"]), expected["mos"].to_numpy(float))
        assert texts(second["mos_label_status"]) == expected["status"].tolist()


PATH_POOL = ["a.mp4", "dir/a.mp4", "x/y/a.mp4", "a", "a.tar.gz", "a.tar", ".hidden",
             "dir/.hidden", "dir/", "b.MP4", "b", " x/b ", "007.mp4", "7.mp4", "/", "c..mp4"]


def by_mode(key: object, mode: str) -> str | None:
    """The documented key modes, written independently with pathlib."""
    text = normalised(key)
    if text is None or mode == "raw":
        return text
    name = PurePosixPath(text.rstrip("/")).name if text.rstrip("/") else ""
    if mode == "stem":
        name = PurePosixPath(name).stem if name else ""
    return normalised(name)


@PROPERTY_SETTINGS
@given(feature_keys=st.lists(st.one_of(st.sampled_from(PATH_POOL), st.none()), min_size=1,
                             max_size=10),
       label_keys=st.lists(st.sampled_from(PATH_POOL), min_size=1, max_size=10),
       mode=st.sampled_from(["raw", "basename", "stem"]),
       formats=st.tuples(st.sampled_from(FORMATS), st.sampled_from(FORMATS)))
def test_key_modes_match_like_pathlib(feature_keys, label_keys, mode, formats) -> None:
    """Labels are keyed by mode on both sides; colliding keys must agree or fail loudly.

    With ``allow_key_merge`` (the mode may fold different paths into one key); without
    it, a label file whose paths fold together is refused.
    """
    label_rows = [{"path": k, "mos": 1 + (i % 5)} for i, k in enumerate(label_keys)]
    folded: dict[str, set[str]] = {}
    for key in label_keys:
        if by_mode(key, mode) is not None:
            folded.setdefault(by_mode(key, mode), set()).add(normalised(key))
    by_key: dict[str, set[float]] = {}
    for row in label_rows:
        key = by_mode(row["path"], mode)
        if key is not None:
            by_key.setdefault(key, set()).add(float(row["mos"]))
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        write_rows(base / f"f.{formats[0]}", [{"path": k, "n": i}
                                              for i, k in enumerate(feature_keys)], formats[0])
        write_rows(base / f"l.{formats[1]}", label_rows, formats[1])
        run = RunContext("property-test", base_dir=folder)
        if any(len(raw) > 1 for raw in folded.values()):
            with pytest.raises(MaterializeError, match="both become"):
                materialize_mos_labels(f"f.{formats[0]}", [f"l.{formats[1]}"], "o.jsonl",
                                       options=MosOptions(min_match_rate=0.0,
                                                          key_normalize=mode), run=run)
        options = MosOptions(min_match_rate=0.0, key_normalize=mode, allow_key_merge=True)
        if not by_key or any(len(v) > 1 for v in by_key.values()):
            with pytest.raises(MaterializeError, match="conflicting MOS labels|no MOS labels"):
                materialize_mos_labels(f"f.{formats[0]}", [f"l.{formats[1]}"], "o.jsonl",
                                       options=options, run=run)
            return
        materialize_mos_labels(f"f.{formats[0]}", [f"l.{formats[1]}"], "o.jsonl",
                               options=options, run=run)
        out = read_back(base / "o.jsonl")
    expected = [next(iter(by_key.get(by_mode(k, mode), {np.nan}))) for k in feature_keys]
    np.testing.assert_array_equal(numbers(out["mos"]), np.array(expected, dtype=float))
    assert numbers(out["n"]).tolist() == list(range(len(feature_keys)))


# --- second opinions -----------------------------------------------------------------------


@st.composite
def second_opinion_case(draw):
    feature_keys = draw(st.lists(KEYS, min_size=1, max_size=12))
    competitors = draw(st.lists(st.sampled_from(["DOVER", "q-align", "niqe"]), min_size=1,
                                max_size=3, unique=True))
    files = []
    for name in competitors:
        scored = draw(st.dictionaries(st.sampled_from(KEY_POOL),
                                      st.one_of(SCORES, st.none()), min_size=1, max_size=8))
        rows = [{"competitor": name, "video_id": k, "score": v,
                 "status": "ok" if v is not None else "failed"} for k, v in scored.items()]
        for row in rows[: draw(st.integers(0, len(rows)))]:  # some rows carry a runtime
            row["runtime_ms"] = 2.5
        files.append((name, rows, draw(st.sampled_from(FORMATS))))
    return {
        "features": [{"video_id": k, "n": i} for i, k in enumerate(feature_keys)],
        "files": files,
        "policy": draw(st.sampled_from(["mark", "drop"])),
        "out_fmt": draw(st.sampled_from(FORMATS)),
        "feature_fmt": draw(st.sampled_from(FORMATS)),
    }


def slug(name: str) -> str:
    return name.lower().replace("-", "_")


def reference_second_opinion(case) -> pd.DataFrame:
    frame = pd.DataFrame(case["features"], columns=["video_id", "n"])
    frame["join_key"] = frame["video_id"].map(normalised)
    keep = np.ones(len(frame), dtype=bool)
    for name, rows, _ in case["files"]:
        scores = pd.DataFrame(rows)
        scores["join_key"] = scores["video_id"].map(normalised)
        scores = scores.dropna(subset=["join_key"])[["join_key", "score", "status"]]
        base = f"second_opinion_{slug(name)}"
        merged = frame[["join_key"]].merge(scores, on="join_key", how="left",
                                           validate="many_to_one")
        frame[f"{base}_score"] = merged["score"].to_numpy(float)
        frame[f"{base}_status"] = merged["status"].map(
            lambda s: "missing" if pd.isna(s) else ("ok" if s == "ok" else "bad")).to_numpy()
        keep &= frame[f"{base}_status"].to_numpy() != "missing"
    return frame[keep].reset_index(drop=True) if case["policy"] == "drop" else frame


@PROPERTY_SETTINGS
@given(case=second_opinion_case())
def test_second_opinion_join_equals_reference_join(case) -> None:
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        features = write_rows(base / f"features.{case['feature_fmt']}", case["features"],
                              case["feature_fmt"])
        scores = [write_rows(base / f"scores{i}.{fmt}", rows, fmt)
                  for i, (_, rows, fmt) in enumerate(case["files"])]
        options = SecondOpinionOptions(key_column="video_id", score_key_field="video_id",
                                       key_normalize="raw", missing_policy=case["policy"])
        marked = reference_second_opinion({**case, "policy": "mark"})
        if len(marked) and any((marked[f"second_opinion_{slug(name)}_status"] == "missing").all()
                               for name, _, _ in case["files"]):
            # A competitor that scores no feature row fails the table (and writes nothing).
            with pytest.raises(MaterializeError, match="scores 0 of"):
                materialize_second_opinion(features, scores, f"out.{case['out_fmt']}",
                                           options=options,
                                           run=RunContext("property-test", base_dir=folder))
            assert not (base / f"out.{case['out_fmt']}").exists()
            return
        audit = materialize_second_opinion(features, scores, f"out.{case['out_fmt']}",
                                           options=options,
                                           run=RunContext("property-test", base_dir=folder))
        expected = reference_second_opinion(case)
        out = read_back(base / f"out.{case['out_fmt']}")
        assert len(out) == len(expected) == audit["output_rows"]
        assert audit["input_rows"] == len(case["features"])
        if not len(out):
            return
        assert numbers(out["n"]).tolist() == expected["n"].tolist()  # kept rows, in order
        if case["out_fmt"] == "parquet":  # a missing score or runtime is null, never NaN
            table = pq.read_table(base / "out.parquet")
            for field in table.schema:
                if pa.types.is_floating(field.type):
                    assert not pc.any(pc.is_nan(table.column(field.name))).as_py(), field
        for name, _, _ in case["files"]:
            column = f"second_opinion_{slug(name)}"
            np.testing.assert_array_equal(numbers(out[f"{column}_score"]),
                                          expected[f"{column}_score"].to_numpy(float))
            assert texts(out[f"{column}_status"]) == expected[f"{column}_status"].tolist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_keys_that_look_like_numbers_match_in_every_sidecar_format(tmp_path: Path,
                                                                   fmt: str) -> None:
    """A score table's key column is text as written, like the feature table's."""
    write_rows(tmp_path / "f.csv", [{"video_id": "007"}, {"video_id": "7"}], "csv")
    write_rows(tmp_path / f"s.{fmt}", [{"competitor": "d", "video_id": "007", "score": 1.0},
                                       {"competitor": "d", "video_id": "7", "score": 2.0}], fmt)
    materialize_second_opinion("f.csv", [f"s.{fmt}"], "o.parquet",
                               options=SecondOpinionOptions(key_column="video_id"),
                               run=RunContext("test", base_dir=str(tmp_path)))
    assert pd.read_parquet(tmp_path / "o.parquet")["second_opinion_d_score"].tolist() == [1, 2]
