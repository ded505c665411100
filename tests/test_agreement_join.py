"""The agreement audit through the second-opinion join: real KoNViD-1k MOS and three real
scorers (DOVER technical and aesthetic, VIDEVAL's NIQE), every figure checked against
scipy on the joined output; edge cases, the streamed path, gates and options.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SHARED_REAL, run_command, snakemake, write_table
from scipy.optimize import curve_fit
from scipy.stats import kendalltau, pearsonr, spearmanr
from test_agreement import _cv_srcc, _logistic, _resamples

from materializer.errors import DataError, UsageError
from materializer.options import SecondOpinionOptions
from materializer.provenance import RunContext
from materializer.second_opinion import materialize_second_opinion

KONVID = SHARED_REAL / "konvid-1k"
COMPETITORS = ["dover_aesthetic", "dover_technical", "niqe"]
RANK_FIGURES = ("srcc", "krcc", "plcc")


def _require(*paths: Path) -> None:
    for path in paths:
        if not path.is_file():
            pytest.skip(f"real data {path} is not present")


LABELS = KONVID / "KONVID_1K_metadata.csv"
DOVER = SHARED_REAL / "dover-predictions" / "val-kv1k.pkl"
LABELS_TXT = {"sep": ", ", "header": False, "names": ["path", "duration_s", "fps", "mos"]}
BY_METADATA = {"path": str(LABELS), "key_column": "flickr_id"}
FEATURES = {"path": str(KONVID / "KONVID_1K_VIDEVAL_feats.mat"), "align_to": BY_METADATA}
"""VIDEVAL's 60 features, in the row order of the corpus metadata (as VIDEVAL pairs them)."""


def _dover(branch: str) -> dict:
    """DOVER's pickled predictions, in the order of the labels.txt its config names."""
    return {"label": f"dover_{branch}", "path": str(DOVER),
            "read": {"variables": [{"technical": "fragments", "aesthetic": "resize"}[branch]],
                     "names": ["score"]},
            "align_to": {"path": str(KONVID / "labels.txt"), "read": LABELS_TXT,
                         "key_column": "path"}}


SOURCES = {
    "dover_aesthetic": _dover("aesthetic"),
    "dover_technical": _dover("technical"),
    "niqe": {"label": "niqe", "path": str(KONVID / "KONVID_1K_NIQE_scores.mat"),
             "read": {"variables": ["y_pred"], "names": ["score"]}, "align_to": BY_METADATA},
}
"""The three scorers as published, each read with its own score variable."""


def score_sources() -> list[dict]:
    _require(LABELS, DOVER, KONVID / "KONVID_1K_VIDEVAL_feats.mat",
             KONVID / "KONVID_1K_NIQE_scores.mat", KONVID / "labels.txt")
    return [SOURCES[name] for name in COMPETITORS]


def write_real_inputs(folder: Path) -> list[dict]:
    """KoNViD-1k MOS onto VIDEVAL's feature table (``mos.parquet``); the score sources."""
    scores = score_sources()
    folder.mkdir(parents=True, exist_ok=True)
    done = run_command("materialize-mos-labels", "--features", json.dumps(FEATURES),
                       "--labels", str(LABELS), "--label-key-column", "flickr_id",
                       "--min-match-rate", "1", "--out", "mos.parquet", cwd=folder)
    assert done.returncode == 0, done.stderr
    return scores


def second_opinion_args(scores: list[dict], out: str = "so.parquet",
                        audit: str = "so.audit.json") -> list[str]:
    args = ["--features", "mos.parquet", "--key-column", "flickr_id", "--key-normalize",
            "stem", "--out", out, "--audit-json", audit]
    for spec in scores:
        args += ["--scores", json.dumps(spec)]
    return args


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("konvid")
    return folder, write_real_inputs(folder)


@pytest.fixture(scope="module")
def joined(real: tuple[Path, list[dict]]) -> tuple[pd.DataFrame, dict]:
    """The three competitors joined onto the MOS table by the command, and its audit."""
    folder, scores = real
    done = run_command("materialize-second-opinion-features", *second_opinion_args(scores),
                       cwd=folder)
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr  # the done line, no warnings
    audit = json.loads((folder / "so.audit.json").read_text())
    return pd.read_parquet(folder / "so.parquet"), audit


def ok_rows(table: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Score and MOS over the rows agreement uses, read from the joined output."""
    base = f"second_opinion_{name}"
    keep = (table[f"{base}_status"] == "ok") & np.isfinite(table["mos"])
    return table.loc[keep, f"{base}_score"].to_numpy(), table.loc[keep, "mos"].to_numpy()


@pytest.mark.parametrize("name", COMPETITORS)
def test_every_figure_equals_scipy_on_the_joined_output(joined: tuple, name: str) -> None:
    table, audit = joined
    got = audit["agreement"]["competitors"][name]
    x, y = ok_rows(table, name)
    assert got["n"] == len(x) == 1200 and got["note"] is None
    for figure, stat in zip(RANK_FIGURES, (spearmanr, kendalltau, pearsonr), strict=True):
        assert got[figure] == pytest.approx(stat(x, y)[0], abs=1e-9), figure
    params, _ = curve_fit(_logistic, x, y, p0=[y.max(), y.min(), x.mean(), x.std() / 4])
    fitted = _logistic(x, *params)
    assert got["logistic_converged"] is True
    assert got["logistic_params"] == pytest.approx(list(params), rel=1e-6)
    assert got["plcc_logistic"] == pytest.approx(pearsonr(fitted, y)[0], rel=1e-6)
    assert got["rmse_logistic"] == pytest.approx(np.sqrt(np.mean((y - fitted) ** 2)), rel=1e-6)
    resamples = _resamples(len(x))
    srcc = [spearmanr(x[i], y[i])[0] for i in resamples]
    assert got["srcc_ci95"] == pytest.approx(list(np.percentile(srcc, [2.5, 97.5])), abs=1e-9)
    plcc = []
    for i in resamples:  # each resample refits, from the full fit
        refit, _ = curve_fit(_logistic, x[i], y[i], p0=params)
        plcc.append(pearsonr(_logistic(x[i], *refit), y[i])[0])
    assert got["plcc_logistic_ci95"] == pytest.approx(list(np.percentile(plcc, [2.5, 97.5])),
                                                      rel=1e-6)


def test_published_figures_and_the_gain_from_combining(joined: tuple) -> None:
    table, audit = joined
    block = audit["agreement"]
    assert block["mos_column"] == "mos" and block["rows_with_mos"] == 1200
    figures = block["competitors"]
    assert list(figures) == COMPETITORS
    assert round(figures["dover_technical"]["srcc"], 3) == 0.861
    assert figures["niqe"]["srcc"] == pytest.approx(-0.54, abs=0.01)
    assert figures["niqe"]["srcc"] < 0 < figures["niqe"]["plcc_logistic"]
    inter = block["intersection"]
    assert inter["intersection_rows"] == 1200 and inter["note"] is None
    for a in COMPETITORS:
        for b in set(COMPETITORS) - {a}:
            expected = spearmanr(table[f"second_opinion_{a}_score"],
                                 table[f"second_opinion_{b}_score"])[0]
            assert inter["pairwise_srcc"][a][b] == pytest.approx(expected, abs=1e-9)
    y = table["mos"].to_numpy()

    def cv_srcc(names: list[str]) -> float:
        return _cv_srcc(table[[f"second_opinion_{n}_score" for n in names]].to_numpy(), y)

    for name in COMPETITORS:
        assert inter["single_cv_srcc"][name] == pytest.approx(cv_srcc([name]), abs=1e-9)
    assert inter["best_single"] == "dover_technical"
    assert inter["combined_cv_srcc"] == pytest.approx(cv_srcc(COMPETITORS), abs=1e-9)
    assert inter["gain"] == pytest.approx(inter["combined_cv_srcc"]
                                          - inter["best_single_cv_srcc"], abs=1e-12)
    assert inter["gain"] > 0
    assert audit["min_abs_srcc"] is None and audit["min_abs_plcc_logistic"] is None


def test_the_streamed_join_gives_the_same_agreement(real: tuple, joined: tuple,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    folder, scores = real
    monkeypatch.setenv("MATERIALIZER_STREAM", "always")
    monkeypatch.setenv("MATERIALIZER_BATCH_ROWS", "97")
    done = run_command("materialize-second-opinion-features",
                       *second_opinion_args(scores, "streamed.parquet", "streamed.json"),
                       cwd=folder)
    assert done.returncode == 0, done.stderr
    streamed = json.loads((folder / "streamed.json").read_text())
    assert streamed["streamed"] == {"batch_rows": 97}
    assert streamed["agreement"] == joined[1]["agreement"]


def test_the_same_run_twice_gives_the_same_block(real: tuple, joined: tuple) -> None:
    folder, scores = real
    done = run_command("materialize-second-opinion-features",
                       *second_opinion_args(scores, "again.parquet", "again.json"), cwd=folder)
    assert done.returncode == 0, done.stderr
    assert json.loads((folder / "again.json").read_text())["agreement"] == \
        joined[1]["agreement"]


def test_a_failing_gate_names_competitor_figure_and_threshold(real: tuple) -> None:
    folder, scores = real
    done = run_command("materialize-second-opinion-features",
                       *second_opinion_args(scores, "gated.parquet", "gated.json"),
                       "--min-abs-srcc", "niqe=0.6,dover_technical=0.8",
                       "--min-abs-plcc-logistic", '{"dover_aesthetic": 0.95}', cwd=folder)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    line = done.stderr.strip()
    assert "agreement with MOS below its gate" in line and "column 'mos'" in line
    assert "competitor 'niqe': |srcc| 0.537 below --min-abs-srcc 0.600" in line
    assert "competitor 'dover_aesthetic': |plcc_logistic| 0.8" in line
    assert "below --min-abs-plcc-logistic 0.950" in line
    assert "dover_technical" not in line  # 0.861 passes 0.8
    assert not (folder / "gated.parquet").exists() and not (folder / "gated.json").exists()
    passing = run_command("materialize-second-opinion-features",
                          *second_opinion_args(scores, "gated.parquet", "gated.json"),
                          "--min-abs-srcc", "0.5", "--min-abs-plcc-logistic", "0.5",
                          cwd=folder)
    assert passing.returncode == 0, passing.stderr
    audit = json.loads((folder / "gated.json").read_text())
    assert audit["min_abs_srcc"] == 0.5 and audit["min_abs_plcc_logistic"] == 0.5


# --- edge cases through the join: nulls with a note, never a crash or a warning -------


@pytest.fixture
def join(tmp_path: Path):
    """Run the library join in tmp_path with every warning an error (none may escape)."""

    def run(features: list[dict], scores: dict[str, list[dict]], out: str = "o.parquet",
            **options) -> dict:
        write_table(tmp_path / "f.parquet" if out.endswith(".parquet") else tmp_path / "f.csv",
                    features)
        specs = []
        for name, rows in scores.items():
            write_table(tmp_path / f"{name}.jsonl", rows)
            specs.append(f"{name}={name}.jsonl")
        features_path = "f.parquet" if out.endswith(".parquet") else "f.csv"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return materialize_second_opinion(
                features_path, specs, out, audit_json="a.json",
                options=SecondOpinionOptions.from_mapping(options),
                run=RunContext("test", base_dir=str(tmp_path)))
    return run


def clips(mos: list[float | None]) -> list[dict]:
    return [{"clip_id": f"c{i:02d}", "mos": m} for i, m in enumerate(mos)]


MOS12 = [1.2, 2.9, 3.1, 4.4, 2.2, 3.8, 1.9, 4.1, 2.5, 3.3, 4.8, 1.5]


def scored(values: list[float], offset: int = 0, **extra) -> list[dict]:
    return [{"clip_id": f"c{i + offset:02d}", "score": v, **extra} for i, v in enumerate(values)]


def test_fewer_than_three_rows(join) -> None:
    audit = join(clips([3.0, 4.0]), {"a": scored([0.1, 0.2])})
    got = audit["agreement"]["competitors"]["a"]
    assert got["n"] == 2 and got["srcc"] is None and got["plcc_logistic"] is None
    assert got["note"] == "fewer than 3 rows: no correlations"
    assert audit["agreement"]["intersection"]["note"] == (
        "one competitor; fewer than 10 intersection rows: no cross-validation")


def test_constant_score(join) -> None:
    audit = join(clips(MOS12), {"flat": scored([0.5] * 12), "good": scored(MOS12)})
    flat = audit["agreement"]["competitors"]["flat"]
    assert flat["n"] == 12 and flat["srcc"] is None and flat["note"] == (
        "constant score: no correlations")
    inter = audit["agreement"]["intersection"]
    assert inter["pairwise_srcc"]["flat"]["good"] is None
    assert inter["single_cv_srcc"]["flat"] is None and inter["best_single"] == "good"


def test_bad_and_missing_score_rows_are_left_out(join, tmp_path: Path) -> None:
    rows = scored([0.3, 0.7, 0.8, 0.9, 0.4, 0.85, 0.35, 0.88, 0.5, 0.6])  # c10, c11: missing
    rows[1]["status"] = rows[4]["status"] = "failed"  # bad: the scorer said so
    audit = join(clips(MOS12), {"q": rows})
    got = audit["agreement"]["competitors"]["q"]
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert out["second_opinion_q_status"].value_counts().to_dict() == {"ok": 8, "bad": 2,
                                                                        "missing": 2}
    keep = out["second_opinion_q_status"] == "ok"
    x, y = out.loc[keep, "second_opinion_q_score"], out.loc[keep, "mos"]
    assert got["n"] == 8
    assert got["srcc"] == pytest.approx(spearmanr(x, y)[0], abs=1e-9)
    assert audit["agreement"]["rows_with_mos"] == 12


def test_dropped_rows_are_not_compared(join, tmp_path: Path) -> None:
    audit = join(clips(MOS12), {"a": scored(MOS12[:12]), "b": scored([1.0] * 3 + [2.0] * 3
                                                                     + [3.0] * 5)},
                 missing_policy="drop")
    out = pd.read_parquet(tmp_path / "o.parquet")
    assert len(out) == 11  # c11 has no b score, so it is not written
    block = audit["agreement"]
    assert block["rows_with_mos"] == 11 and block["competitors"]["a"]["n"] == 11


def test_a_competitor_that_covers_no_mos_row(join) -> None:
    mos = [None] * 6 + MOS12[6:]
    audit = join(clips(mos), {"early": scored([0.1, 0.5, 0.2, 0.9, 0.4, 0.3]),
                              "all": scored(MOS12)})
    early = audit["agreement"]["competitors"]["early"]
    assert early["n"] == 0 and early["srcc"] is None
    assert early["note"] == "fewer than 3 rows: no correlations"
    assert audit["agreement"]["competitors"]["all"]["n"] == 6
    inter = audit["agreement"]["intersection"]
    assert inter["intersection_rows"] == 0
    assert inter["pairwise_srcc"] == {"all": {"early": None}, "early": {"all": None}}
    assert inter["note"] == "fewer than 10 intersection rows: no cross-validation"


def test_an_empty_intersection(join) -> None:
    audit = join(clips(MOS12 * 2), {"a": scored(MOS12), "b": scored(MOS12, offset=12)})
    block = audit["agreement"]
    assert block["competitors"]["a"]["n"] == block["competitors"]["b"]["n"] == 12
    assert block["intersection"]["intersection_rows"] == 0
    assert block["intersection"]["combined_cv_srcc"] is None
    assert block["intersection"]["gain"] is None and block["intersection"]["note"]


def test_csv_to_csv_compares_mos_read_as_text(join, tmp_path: Path) -> None:
    audit = join(clips(MOS12[:11] + [None]), {"a": scored([m * 2 for m in MOS12])},
                 out="o.csv")
    got = audit["agreement"]["competitors"]["a"]
    assert audit["agreement"]["rows_with_mos"] == 11 and got["n"] == 11
    assert got["srcc"] == pytest.approx(1.0)


def test_a_table_without_mos_has_no_agreement_block(join) -> None:
    audit = join([{"clip_id": "c00", "psnr": 40.0}], {"a": scored([0.1])})
    assert "agreement" not in audit


def test_another_mos_column_by_name(join) -> None:
    features = [{**row, "mos_2": 6 - row["mos"]} for row in clips(MOS12)]
    audit = join(features, {"a": scored(MOS12)}, agreement_mos_column="mos_2")
    assert audit["agreement"]["mos_column"] == "mos_2"
    assert audit["agreement"]["competitors"]["a"]["srcc"] == pytest.approx(-1.0)


def test_a_named_mos_column_that_is_absent_fails_the_table(join, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="agreement_mos_column 'dmos' is not present"):
        join(clips(MOS12), {"a": scored(MOS12)}, agreement_mos_column="dmos")
    assert not (tmp_path / "o.parquet").exists()


def test_a_gate_without_a_mos_column_fails_the_table(join) -> None:
    with pytest.raises(UsageError, match="min_abs_srcc needs a MOS column"):
        join([{"clip_id": "c00"}], {"a": scored([0.1])}, min_abs_srcc=0.2)


def test_a_null_figure_fails_its_gate(join, tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        join(clips(MOS12), {"flat": scored([0.5] * 12)}, min_abs_srcc={"flat": 0.1})
    assert str(caught.value).endswith(
        "competitor 'flat': srcc is None (constant score: no correlations), min_abs_srcc 0.100")
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "a.json").exists()


@pytest.mark.parametrize(("flag", "message"), [
    ("abc", "not NUMBER, NAME=NUMBER[,NAME=NUMBER...] or a JSON object"),
    ("a=", "not NUMBER"), ("[0.5]", "not NUMBER"),
    ("1.5", "--min-abs-srcc must be in [0, 1]; got 1.5"),
    ("a=0.5,b=2", "--min-abs-srcc must be in [0, 1] for competitor 'b'; got 2.0")])
def test_bad_gate_flags_are_usage_errors(tmp_path: Path, flag: str, message: str) -> None:
    write_table(tmp_path / "f.csv", clips(MOS12))
    write_table(tmp_path / "s.csv", scored(MOS12))
    done = run_command("materialize-second-opinion-features", "--features", "f.csv",
                       "--scores", "a=s.csv", "--out", "o.csv", "--min-abs-srcc", flag,
                       cwd=tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_in_a_manifest_the_gated_table_fails_and_the_others_run(tmp_path: Path) -> None:
    write_table(tmp_path / "f.csv", clips(MOS12))
    write_table(tmp_path / "good.csv", scored(MOS12))
    write_table(tmp_path / "noise.csv", scored([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6,
                                                0.55, 0.45, 0.65]))
    table = {"features": "f.csv", "key_column": "clip_id"}
    manifest = {"second_opinion": {
        "defaults": {"min_abs_srcc": 0.5},
        "report_json": "r.json", "report_md": "r.md",
        "tables": [{**table, "id": "good", "scores": ["good=good.csv"], "out": "good_out.csv"},
                   {**table, "id": "noisy", "scores": ["noise=noise.csv"], "out": "noisy.csv",
                    "min_abs_plcc_logistic": {"noise": 0.9}}]}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    done = snakemake(tmp_path, "--configfile", "m.yaml")
    assert done.returncode != 0
    report = json.loads((tmp_path / "r.json").read_text())
    good, noisy = report["tables"]
    assert good["status"] == "ok" and good["agreement"]["competitors"]["good"]["srcc"] == 1.0
    assert noisy["status"] == "error" and "agreement" not in noisy
    # Noise gives either a poor fit or none that the data identify; both fail the gate.
    assert noisy["error"].startswith("table noisy: f.csv: column 'mos': agreement with MOS "
                                     "below its gate: competitor 'noise': ")
    assert "plcc_logistic" in noisy["error"]
    assert noisy["error"].endswith("min_abs_plcc_logistic 0.900")
    assert not (tmp_path / "noisy.csv").exists()


def test_manifest_gates_are_checked_before_any_job(tmp_path: Path) -> None:
    manifest = {"tables": [{"id": "t", "features": "f.csv", "scores": ["a=s.csv"],
                            "out": "o.csv", "min_abs_srcc": {"a": 2},
                            "min_abs_plcc_logistic": "high"}]}
    write_table(tmp_path / "f.csv", clips(MOS12))
    write_table(tmp_path / "s.csv", scored(MOS12))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    done = snakemake(tmp_path, "--configfile", "m.yaml")
    assert done.returncode == 2
    assert "min_abs_srcc must be in [0, 1] for competitor 'a'; got 2" in done.stderr
    assert "min_abs_plcc_logistic must be null, a number, or a mapping" in done.stderr
    assert not (tmp_path / "o.csv").exists()
