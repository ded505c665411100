"""Joins on real public corpus files (see tests/data/ORIGIN.md and ../shared SOURCES.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, SHARED_REAL, TEST_DATA

EXAMPLE = ROOT / "config" / "data"
needs_shared = pytest.mark.skipif(not SHARED_REAL.is_dir(),
                                  reason="../shared/data/real is not present")


LABELS_TXT = {"sep": ", ", "header": False, "names": ["path", "duration_s", "fps", "mos"]}
"""DOVER's headerless ', '-separated labels.txt, read as published."""


def _labels_txt(path: Path) -> str:
    return json.dumps({"path": str(path), "read": LABELS_TXT})


@needs_shared
def test_konvid_qalign_labels_onto_videval_features(tmp_path: Path, mos) -> None:
    shutil.copy(SHARED_REAL / "konvid-1k/konvid.json", tmp_path)
    features = {"path": str(SHARED_REAL / "konvid-1k/KONVID_1K_VIDEVAL_feats.mat"),
                "align_to": {"path": str(TEST_DATA / "KONVID_1K_metadata.csv"),
                             "key_column": "flickr_id"}}
    done = mos("--features", json.dumps(features), "--labels", "konvid.json",
               "--feature-key-column", "flickr_id", "--label-key-column", "img_path",
               "--label-mos-column", "gt_score", "--key-normalize", "stem",
               "--min-match-rate", "1", "--out", "konvid.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "a.json").read_text())
    assert (audit["matched_rows"], audit["input_rows"]) == (1200, 1200)
    out = pd.read_parquet(tmp_path / "konvid.parquet")
    meta = pd.read_csv(TEST_DATA / "KONVID_1K_metadata.csv", dtype={"flickr_id": str})
    # Q-Align's gt_score is the corpus MOS: it must agree with VIDEVAL's metadata.
    merged = out.merge(meta, on="flickr_id", suffixes=("", "_meta"))
    assert (merged["mos"] - merged["mos_meta"]).abs().max() < 1e-6
    assert out.columns[:61].tolist() == [*(f"feats_mat_{i}" for i in range(1, 61)),
                                         "flickr_id"]


@needs_shared
def test_live_vqc_0_100_dover_labels_need_a_regex(tmp_path: Path, mos) -> None:
    shutil.copy(TEST_DATA / "LIVE_VQC_metadata.csv", tmp_path)
    common = ("--features", "LIVE_VQC_metadata.csv", "--feature-key-column", "File",
              "--labels", _labels_txt(SHARED_REAL / "live-vqc/labels.txt"),
              "--key-normalize", "stem")
    plain = mos(*common, "--out", "plain.parquet", "--audit-json", "plain.json",
                "--min-match-rate", "0.9")
    assert plain.returncode == 0, plain.stderr
    audit = json.loads((tmp_path / "plain.json").read_text())
    assert audit["matched_rows"] == 576  # the 9 A0xxNEW clips need the suffix stripped
    assert all(k.endswith("NEW") for k in audit["unmatched_feature_keys"])
    done = mos(*common, "--feature-key-regex", "^(.*?)(?:NEW)?$", "--min-match-rate", "1",
               "--out", "livevqc.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    audit = json.loads((tmp_path / "a.json").read_text())
    assert audit["matched_rows"] == 585 and audit["label_files"][0]["scale"] == "0-100"
    out = pd.read_parquet(tmp_path / "livevqc.parquet")
    assert ((out["mos"] - (1 + 4 * out["MOS"] / 100)).abs() < 1e-9).all()


@needs_shared
def test_dover_konvid_predictions_as_second_opinion(tmp_path: Path, second_opinion) -> None:
    shutil.copy(TEST_DATA / "KONVID_1K_metadata.csv", tmp_path)
    # DOVER's pickled predictions, in the order of the labels.txt its config names.
    scores = {"label": "dover-technical",
              "path": str(SHARED_REAL / "dover-predictions/val-kv1k.pkl"),
              "align_to": {"path": str(SHARED_REAL / "konvid-1k/labels.txt"),
                           "read": LABELS_TXT, "key_column": "path"}}
    done = second_opinion("--features", "KONVID_1K_metadata.csv", "--key-column", "flickr_id",
                          "--scores", json.dumps(scores),
                          "--score-field", "fragments", "--key-normalize", "stem",
                          "--missing-policy", "fail", "--out", "o.parquet",
                          "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = pd.read_parquet(tmp_path / "o.parquet")
    score = out["second_opinion_dover_technical_score"]
    assert score.notna().sum() == 1200
    # SOURCES.md measured SRCC 0.861 between DOVER's technical branch and the MOS.
    assert score.rank().corr(out["mos"].rank()) == pytest.approx(0.861, abs=0.002)


def test_niqe_scores_from_mit_files(tmp_path: Path, second_opinion) -> None:
    shutil.copy(TEST_DATA / "KONVID_1K_metadata.csv", tmp_path)
    shutil.copy(EXAMPLE / "konvid-1k" / "KONVID_1K_NIQE_scores.mat", tmp_path)
    niqe = {"label": "NIQE", "path": "KONVID_1K_NIQE_scores.mat",
            "read": {"variables": ["y_pred"], "names": ["niqe"]},
            "align_to": {"path": "KONVID_1K_metadata.csv", "key_column": "flickr_id"}}
    done = second_opinion("--features", "KONVID_1K_metadata.csv", "--key-column", "flickr_id",
                          "--scores", json.dumps(niqe), "--score-field", "niqe",
                          "--out", "o.jsonl", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    rows = pd.DataFrame([json.loads(x) for x in (tmp_path / "o.jsonl").read_text()
                         .splitlines()])
    assert rows["second_opinion_niqe_status"].eq("ok").all()
    # NIQE is lower-is-better: SOURCES.md measured SRCC -0.537 against MOS.
    corr = rows["second_opinion_niqe_score"].rank().corr(rows["mos"].rank())
    assert corr == pytest.approx(-0.537, abs=0.002)
    metadata = pd.read_csv(TEST_DATA / "KONVID_1K_metadata.csv", dtype=str)
    assert rows["flickr_id"].tolist() == metadata["flickr_id"].tolist()
