"""Sources as their authors publish them, through the commands: MATLAB, Excel, delimited
text and pickled arrays read in place, and rows matched by position (``align_to``).

The files are the ones in ../shared/data/real (SOURCES.md sections B and D), read where
they lie; every expected figure is the corpus's own (its metadata or its label file)
or computed here independently with pandas/scipy from those files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_REAL, read_any
from scipy import stats

needs_real = pytest.mark.skipif(not SHARED_REAL.is_dir(),
                                reason="../shared/data/real is not present")
LABELS_TXT = {"sep": ", ", "header": False, "names": ["path", "duration_s", "fps", "mos"]}
"""DOVER's headerless labels.txt, one per corpus."""


def real(name: str) -> str:
    return str(SHARED_REAL / name)


def niqe_features(corpus: str, stem: str, key: str, mos: str) -> str:
    """VIDEVAL's NIQE scores (MIT) as a feature table, read from its .mat in the row
    order of the corpus metadata, with the .mat's MOS checked against the metadata's."""
    return json.dumps({
        "path": real(f"{corpus}/{stem}_NIQE_scores.mat"),
        "read": {"variables": ["MOS", "y_pred"], "names": ["mos_in_mat", "niqe"]},
        "align_to": {"path": real(f"{corpus}/{stem}_metadata.csv"), "key_column": key,
                     "check": {"mos_in_mat": mos}}})


LIVE_VQC = niqe_features("live-vqc", "LIVE_VQC", "File", "MOS")
KONVID = niqe_features("konvid-1k", "KONVID_1K", "flickr_id", "mos")
YOUTUBE = niqe_features("youtube-ugc", "YOUTUBE_UGC", "vid", "MOSFull")


def source(path: str, **fields) -> str:
    """A source mapping as the commands take it: a JSON object in place of a path."""
    return json.dumps({"path": path, **fields})


def audit_of(folder: Path) -> dict:
    return json.loads((folder / "a.json").read_text())


def labels_txt(name: str) -> pd.DataFrame:
    return pd.read_csv(SHARED_REAL / name, sep=", ", engine="python", header=None,
                       names=LABELS_TXT["names"], dtype={"path": str})


@needs_real
def test_live_vqc_mat_labels_onto_niqe_features(tmp_path: Path, mos) -> None:
    done = mos("--features", LIVE_VQC,
               "--labels", source(real("native/live-vqc/LiveVQC_data.mat"),
                                  read={"variables": ["video_list", "mos"],
                                        "names": ["name", "mos"]}),
               "--feature-key-column", "File", "--key-normalize", "stem",
               "--feature-key-regex", r"^(.*?)(?:NEW)?$", "--min-match-rate", "1",
               "--out", "out.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    audit = audit_of(tmp_path)
    assert (audit["matched_rows"], audit["input_rows"]) == (585, 585)
    assert audit["label_files"][0]["scale"] == "0-100"
    out = read_any(tmp_path / "out.parquet")
    # The .mat MOS is the one VIDEVAL's table carries beside its NIQE scores.
    assert np.allclose(out["mos_raw_0_100"], out["mos_in_mat"], rtol=1e-9)
    described = audit["run_provenance"]["inputs"]["labels"][0]
    assert described["read"]["variables"] == ["video_list", "mos"]
    assert described["read"]["format"] == "mat" and len(described["sha256"]) == 64


@needs_real
def test_konvid_v73_labels_match_the_metadata(tmp_path: Path, mos) -> None:
    done = mos("--features", KONVID,
               "--labels", source(real("native/konvid-1k/KoNViD-1kinfo.mat"),
                                  read={"variables": ["video_names", "scores"]}),
               "--feature-key-column", "flickr_id", "--label-key-column", "video_names",
               "--label-mos-column", "scores", "--label-key-regex", "^([0-9]+)_",
               "--min-match-rate", "1", "--out", "out.csv", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    assert audit_of(tmp_path)["matched_rows"] == 1200
    out = pd.read_csv(tmp_path / "out.csv", dtype={"flickr_id": str})
    meta = pd.read_csv(SHARED_REAL / "konvid-1k/KONVID_1K_metadata.csv",
                       dtype={"flickr_id": str}).set_index("flickr_id")
    assert np.abs(out["mos"].to_numpy() - meta.loc[out["flickr_id"], "mos"].to_numpy()).max() \
        < 5e-5


@needs_real
def test_youtube_ugc_xlsx_sheet_labels(tmp_path: Path, mos) -> None:
    done = mos("--features", YOUTUBE,
               "--labels", source(real("native/youtube-ugc/"
                                       "original_videos_MOS_for_YouTube_UGC_dataset.xlsx"),
                                  read={"sheet": "MOS"}),
               "--feature-key-column", "vid", "--label-key-column", "vid",
               "--label-mos-column", "MOS full", "--min-match-rate", "1",
               "--out", "out.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    assert (audit_of(tmp_path)["matched_rows"], audit_of(tmp_path)["input_rows"]) \
        == (1380, 1380)
    out = read_any(tmp_path / "out.parquet")
    assert np.allclose(out["mos"], out["mos_in_mat"], atol=5e-4)


CVD2014 = {"read": {"sep": ";", "decimal": ","}}


@needs_real
def test_cvd2014_decimal_commas_with_stated_bounds(tmp_path: Path, mos) -> None:
    features = source(real("dover-predictions/val-cvd2014.pkl"),
                      align_to={"path": real("cvd2014/labels.txt"), "read": LABELS_TXT,
                                "key_column": "path"})
    args = ("--features", features,
            "--labels", source(real("native/cvd2014/CVD2014_Realignment_MOS.csv"), **CVD2014),
            "--feature-key-column", "path", "--key-normalize", "stem",
            "--label-key-column", "File_name", "--label-mos-column", "Realignment MOS",
            "--mos-scale", "0-100", "--min-match-rate", "1", "--out", "out.parquet",
            "--audit-json", "a.json")
    refused = mos(*args)
    assert refused.returncode == 1
    assert "-6.5" in refused.stderr and "mos_bounds" in refused.stderr.replace("-", "_")
    assert not (tmp_path / "out.parquet").exists()

    done = mos(*args, "--mos-bounds=-10,100")  # with "=": the value starts with "-"
    assert done.returncode == 0, done.stderr
    audit = audit_of(tmp_path)
    assert audit["matched_rows"] == 234 and audit["mos_bounds"] == [-10.0, 100.0]
    out = read_any(tmp_path / "out.parquet").set_index("path")
    dover = labels_txt("cvd2014/labels.txt").set_index("path")
    assert np.allclose(out["mos_raw_0_100"], dover.loc[out.index, "mos"], atol=1e-9)
    assert out["mos"].min() < 1.0  # -6.5 on 0-100 is below 1 on 1-5, as the corpus means


@needs_real
@pytest.mark.parametrize(("labels", "features", "flags"), [
    ("konvid-1k/labels.txt", KONVID,
     ("--feature-key-column", "flickr_id", "--key-normalize", "stem")),
    ("live-vqc/labels.txt", LIVE_VQC,
     ("--feature-key-column", "File", "--key-normalize", "stem",
      "--feature-key-regex", r"^(.*?)(?:NEW)?$")),
    ("youtube-ugc/labels.txt", YOUTUBE,
     ("--feature-key-column", "vid", "--key-normalize", "stem",
      "--label-key-regex", "^(.*?)_crf_")),
    ("lsvq/labels_test.txt", real("lsvq/LSVQ_whole_test.csv"),
     ("--feature-key-column", "name", "--key-normalize", "raw",
      "--label-key-regex", r"^(.*)\.mp4$", "--overwrite")),
], ids=["konvid-1k", "live-vqc", "youtube-ugc", "lsvq"])
def test_dover_labels_txt_as_label_files(tmp_path: Path, mos, labels, features, flags) -> None:
    done = mos("--features", features, "--labels", source(real(labels), read=LABELS_TXT),
               *flags, "--min-match-rate", "0", "--out", "out.parquet", "--audit-json",
               "a.json")
    assert done.returncode == 0, done.stderr
    audit = audit_of(tmp_path)
    expected = labels_txt(labels)
    assert audit["label_files"][0]["rows"] == len(expected)
    out = read_any(tmp_path / "out.parquet")
    labelled = out[out["mos_label_status"] == "ok"]
    assert audit["matched_rows"] == len(labelled) > 0.7 * len(expected)
    # Every label is one of the file's MOS values, on the file's own scale.
    column = "mos_raw_0_100" if expected["mos"].max() > 5 else "mos"
    assert np.isin(labelled[column].round(9), expected["mos"].round(9)).all()


@needs_real
def test_live_qualcomm_struct_fields_onto_a_feature_table_read_as_text(tmp_path: Path,
                                                                       mos) -> None:
    features = source(real("live-qualcomm/labels.txt"),
                      read={**LABELS_TXT, "names": ["path", "a", "b", "dover_mos"]})
    labels = source(real("native/live-qualcomm/LIVE-Qualcomm_qualcommSubjectiveData.mat"),
                    read={"variables": ["qualcommVideoData.vidNames",
                                        "qualcommSubjectiveData.unBiasedMOS"],
                          "names": ["name", "mos"]})
    done = mos("--features", features, "--labels", labels, "--key-normalize", "basename",
               "--min-match-rate", "1", "--out", "out.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    assert (audit_of(tmp_path)["matched_rows"], audit_of(tmp_path)["input_rows"]) == (208, 208)
    out = read_any(tmp_path / "out.parquet")
    assert np.allclose(out["mos_raw_0_100"], out["dover_mos"], rtol=1e-9)
    inputs = audit_of(tmp_path)["run_provenance"]["inputs"]
    assert inputs["features"]["read"]["names"] == ["path", "a", "b", "dover_mos"]


def konvid_labels_table(folder: Path, mos) -> str:
    """KoNViD-1k MOS (VIDEVAL's metadata) onto its NIQE table: the table DOVER's
    predictions are joined onto."""
    done = mos("--features", KONVID,
               "--labels", real("konvid-1k/KONVID_1K_metadata.csv"),
               "--feature-key-column", "flickr_id", "--label-key-column", "flickr_id",
               "--min-match-rate", "1", "--out", "kv1k.parquet")
    assert done.returncode == 0, done.stderr
    return "kv1k.parquet"


DOVER_KV1K = {"label": "dover-technical", "path": real("dover-predictions/val-kv1k.pkl"),
              "read": {"variables": ["fragments"], "names": ["score"]},
              "align_to": {"path": real("konvid-1k/labels.txt"), "read": LABELS_TXT,
                           "key_column": "path"}}


@needs_real
def test_dover_pickle_aligned_to_its_label_file(tmp_path: Path, mos, second_opinion) -> None:
    table = konvid_labels_table(tmp_path, mos)
    done = second_opinion("--features", table, "--scores", json.dumps(DOVER_KV1K),
                          "--key-column", "flickr_id", "--key-normalize", "stem",
                          "--min-coverage", "1", "--out", "out.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = read_any(tmp_path / "out.parquet")
    srcc = stats.spearmanr(out["second_opinion_dover_technical_score"], out["mos"]).statistic
    assert round(srcc, 3) == 0.861
    # Matched by position: DOVER's derived CSV (row i of the pickle beside line i of
    # labels.txt) gives every clip the same score.
    derived = pd.read_csv(SHARED_REAL / "dover-predictions/val-kv1k.derived.csv")
    derived["flickr_id"] = derived["path"].str.extract(r"(\d+)\.mp4$", expand=False)
    expected = derived.set_index("flickr_id").loc[out["flickr_id"], "dover_technical_raw"]
    assert np.allclose(out["second_opinion_dover_technical_score"], expected, atol=1e-6)
    inputs = audit_of(tmp_path)["run_provenance"]["inputs"]
    aligned = inputs["scores"][0]["align_to"]
    assert aligned["key_column"] == "path" and aligned["rows"] == 1200
    assert inputs["references"][0]["sha256"] == aligned["sha256"]


VIDEVAL_META = {"path": real("konvid-1k/KONVID_1K_metadata.csv"), "key_column": "flickr_id"}


@needs_real
def test_videval_features_and_scores_aligned_to_their_metadata(tmp_path: Path, mos,
                                                               second_opinion) -> None:
    features = source(real("konvid-1k/KONVID_1K_VIDEVAL_feats.mat"), align_to=VIDEVAL_META)
    done = mos("--features", features, "--labels", real("konvid-1k/KONVID_1K_metadata.csv"),
               "--label-key-column", "flickr_id", "--min-match-rate", "1",
               "--out", "feats.parquet", "--audit-json", "a.json")
    assert done.returncode == 0, done.stderr
    out = read_any(tmp_path / "feats.parquet")
    derived = pd.read_csv(SHARED_REAL / "konvid-1k/KONVID_1K_VIDEVAL_feats.derived.csv",
                          dtype={"flickr_id": str})
    assert len(out) == 1200 and list(out["flickr_id"]) == list(derived["flickr_id"])
    mat = out[[f"feats_mat_{i}" for i in range(1, 61)]].to_numpy()
    # The derived CSV kept 10 significant digits, and the 2 NaN cells of the .mat.
    assert np.allclose(mat, derived.drop(columns="flickr_id").to_numpy(), rtol=1e-9,
                       equal_nan=True)
    assert audit_of(tmp_path)["matched_rows"] == 1200

    niqe = {"label": "niqe", "path": real("konvid-1k/KONVID_1K_NIQE_scores.mat"),
            "read": {"variables": ["MOS", "y_pred"], "names": ["MOS", "score"]},
            "align_to": {**VIDEVAL_META, "check": {"MOS": "mos"}}}
    args = ("--features", "feats.parquet", "--key-column", "flickr_id", "--min-coverage", "1",
            "--out", "scored.parquet")
    done = second_opinion(*args, "--scores", json.dumps(niqe))
    assert done.returncode == 0, done.stderr
    scored = read_any(tmp_path / "scored.parquet")
    niqe_csv = pd.read_csv(SHARED_REAL / "konvid-1k/KONVID_1K_NIQE_scores.derived.csv",
                           dtype={"flickr_id": str}).set_index("flickr_id")
    assert np.allclose(scored["second_opinion_niqe_score"],
                       niqe_csv.loc[scored["flickr_id"], "niqe"], rtol=1e-9)

    # The same check against a reference with two rows swapped names the first row.
    lines = (SHARED_REAL / "konvid-1k/KONVID_1K_metadata.csv").read_text().splitlines()
    (tmp_path / "reordered.csv").write_text("\n".join([lines[0], lines[2], lines[1],
                                                       *lines[3:]]) + "\n")
    reordered = {**niqe, "align_to": {**niqe["align_to"], "path": "reordered.csv"}}
    before = (tmp_path / "scored.parquet").read_bytes()
    refused = second_opinion(*args, "--scores", json.dumps(reordered))
    assert refused.returncode == 1 and (tmp_path / "scored.parquet").read_bytes() == before
    assert "align_to.check fails at row 1: MOS" in refused.stderr
    assert "reordered.csv" in refused.stderr and len(refused.stderr.splitlines()) == 1


def _bad_files(folder: Path) -> None:
    """Small broken and hostile files, each wrong in one way."""
    import pickle

    import h5py
    import scipy.io

    pd.DataFrame({"name": ["a", "b"], "x": [1.0, 2.0]}).to_csv(folder / "features.csv",
                                                                index=False)
    (folder / "labels.txt").write_text("a 4.0\nb 3.5\n")
    scipy.io.savemat(folder / "labels.mat", {"names": np.array(["a", "b"], dtype=object),
                                             "mos": np.array([4.0, 3.5]),
                                             "short": np.array([1.0]),
                                             "s": {"field": np.array([1.0, 2.0])}})
    with h5py.File(folder / "v73.mat", "w") as handle:
        handle["mos"] = np.array([[4.0, 3.5]])
    (folder / "truncated.mat").write_bytes((folder / "labels.mat").read_bytes()[:200])
    (folder / "corrupt.xlsx").write_bytes(b"PK\x03\x04 not a zip archive")
    (folder / "truncated.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', ")
    (folder / "broken.pkl").write_bytes(pickle.dumps({"mos": [1.0, 2.0]})[:-3])
    # A pickle whose global would run os.system and create a file: refused, never run.
    evil = (b"cposix\nsystem\n(S'touch " + str(folder / "pwned").encode() + b"'\ntR.")
    (folder / "evil.pkl").write_bytes(evil)
    (folder / "three.txt").write_text("a\nb\nc\n")
    pd.DataFrame({"name": ["a"], "mos": [4.0]}).to_excel(folder / "book.xlsx",
                                                         sheet_name="Ratings", index=False)


BAD_LABELS = [
    ({"path": "labels.txt", "read": {"sheet": 0}}, 2, "read.sheet does not apply"),
    ({"path": "labels.txt", "read": {"sepp": " "}}, 2, "unknown read key 'sepp'"),
    ({"path": "labels.txt", "read": {"format": "hdf"}}, 2, "read.format"),
    ({"path": "labels.txt", "read": {"header": False}}, 2, "read.names must name"),
    ({"path": "labels.txt", "read": {"header": False, "names": ["name", "mos", "extra"]}}, 1,
     "names"),
    ({"path": "labels.mat", "read": {"variables": ["video_list"]}}, 1, "names, mos"),
    ({"path": "labels.mat", "read": {"variables": ["s.nofield"]}}, 1, "field"),
    ({"path": "labels.mat", "read": {"variables": ["names", "short"]}}, 1, "length"),
    ({"path": "v73.mat", "read": {"variables": ["nothere"]}}, 1, "mos"),
    ({"path": "book.xlsx", "read": {"sheet": "MOS"}}, 1, "Ratings"),
    ({"path": "truncated.mat"}, 1, "truncated.mat"),
    ({"path": "corrupt.xlsx"}, 1, "corrupt.xlsx"),
    ({"path": "truncated.npy"}, 1, "truncated.npy"),
    ({"path": "broken.pkl"}, 1, "broken.pkl"),
    ({"path": "evil.pkl"}, 1, "posix.system"),
    ({"path": "labels.txt", "read": {"header": False, "names": ["name", "mos"]},
      "align_to": {"path": "three.txt", "read": {"header": False, "names": ["k"]},
                   "key_column": "k"}}, 1, "2 rows, but its align_to reference three.txt has 3"),
    ({"path": "labels.txt", "read": {"header": False, "names": ["name", "mos"]},
      "align_to": {"path": "three.txt", "key_column": "k", "bogus": 1}}, 2,
     "unknown align_to key 'bogus'"),
]


@pytest.mark.parametrize(("labels", "code", "says"), BAD_LABELS,
                         ids=[f"{i}-{b[2][:24]}" for i, b in enumerate(BAD_LABELS)])
def test_bad_sources_fail_with_one_line_and_write_nothing(tmp_path: Path, mos, labels, code,
                                                          says) -> None:
    _bad_files(tmp_path)
    done = mos("--features", "features.csv", "--labels", json.dumps(labels),
               "--out", "out.parquet", "--audit-json", "a.json")
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and labels["path"] in lines[0], lines
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "a.json").exists()
    assert not (tmp_path / "pwned").exists()


def test_an_aligned_file_may_not_already_have_the_key_column(tmp_path: Path, mos) -> None:
    _bad_files(tmp_path)
    (tmp_path / "two.txt").write_text("a\nb\n")
    labels = {"path": "labels.txt", "read": {"header": False, "names": ["k", "mos"]},
              "align_to": {"path": "two.txt", "read": {"header": False, "names": ["k"]},
                           "key_column": "k"}}
    done = mos("--features", "features.csv", "--labels", json.dumps(labels),
               "--out", "out.parquet")
    assert done.returncode == 1 and "already has a column 'k'" in done.stderr


def test_a_json_source_that_is_not_json_is_bad_usage(tmp_path: Path, mos) -> None:
    _bad_files(tmp_path)
    done = mos("--features", "features.csv", "--labels", '{"path": labels.txt}',
               "--out", "out.parquet")
    assert done.returncode == 2 and "must be a JSON object" in done.stderr


def test_help_says_a_source_may_be_a_json_object(mos) -> None:
    done = mos("--help")
    assert done.returncode == 0 and "JSON object" in done.stdout
    assert "config/README.md" in done.stdout


def test_schema_and_docs_declare_every_read_key_as_the_readers_do() -> None:
    import yaml

    from materializer.manifest import schema_path
    from materializer.readers import READ_KEYS

    schema = yaml.safe_load(schema_path().read_text())["$defs"]["read"]["properties"]
    assert set(schema) == set(READ_KEYS)
    for key, spec in READ_KEYS.items():
        assert {k: v for k, v in schema[key].items() if k != "description"} \
            == dict(spec.schema), key
    docs = (Path(__file__).parents[1] / "config/README.md").read_text()
    sources = docs.split("## Sources")[1].split("\n## ")[0]
    assert all(f"| `{key}` |" in sources for key in READ_KEYS)
