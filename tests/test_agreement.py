"""Agreement of second-opinion scorers with MOS, on real KoNViD-1k data.

MOS is VIDEVAL's KoNViD-1k metadata; the scorers are DOVER's published technical and
aesthetic predictions (../shared, see SOURCES.md) and VIDEVAL's NIQE scores. Every figure
is checked against scipy computed here, independently of the module.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, SHARED_REAL
from scipy.optimize import curve_fit
from scipy.stats import kendalltau, pearsonr, spearmanr

from materializer.agreement import competitor_agreement, gate_failures, intersection_agreement
from materializer.readers import read_source

KONVID = ROOT / "config" / "data" / "konvid-1k"
DOVER = SHARED_REAL / "dover-predictions" / "val-kv1k.pkl"
DOVER_ORDER = SHARED_REAL / "konvid-1k" / "labels.txt"
"""DOVER's predictions are rows in the order of this label file (its config's anno_file)."""
COMPETITORS = ["dover_technical", "dover_aesthetic", "niqe"]


def _logistic(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    return (b1 - b2) / (1 + np.exp(-(x - b3) / np.abs(b4))) + b2


def _require(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"real data {path} is not present")
    return path


def _niqe_table() -> pd.DataFrame:
    """KoNViD-1k MOS with VIDEVAL's NIQE, matched by position as VIDEVAL pairs them."""
    meta = pd.read_csv(_require(KONVID / "KONVID_1K_metadata.csv"), dtype={"flickr_id": str})
    niqe = read_source(_require(KONVID / "KONVID_1K_NIQE_scores.mat"), "NIQE.mat")
    # VIDEVAL's .mat holds the metadata's rows in order, with their MOS repeated.
    assert np.allclose(niqe.column("MOS").to_numpy(), meta["mos"].to_numpy())
    return meta[["flickr_id", "mos"]].assign(niqe=niqe.column("y_pred").to_numpy())


@pytest.fixture(scope="module")
def niqe_rows() -> pd.DataFrame:
    return _niqe_table()


@pytest.fixture(scope="module")
def konvid() -> pd.DataFrame:
    """MOS, NIQE and DOVER in metadata order; DOVER's key is a path, so join on its stem."""
    branches = read_source(_require(DOVER), DOVER.name)
    order = read_source(_require(DOVER_ORDER), DOVER_ORDER.name,
                        {"sep": ", ", "header": False, "names": ["path", "s", "fps", "mos"]})
    dover = pd.DataFrame({"path": order.column("path").to_pylist(),
                          "dover_technical": branches.column("fragments").to_numpy(),
                          "dover_aesthetic": branches.column("resize").to_numpy()})
    dover["flickr_id"] = dover["path"].str.extract(r"([^/]+)\.mp4$", expand=False)
    table = _niqe_table().merge(dover[["flickr_id", "dover_technical", "dover_aesthetic"]],
                                on="flickr_id", validate="1:1")
    assert len(table) == 1200
    return table


@pytest.fixture(scope="module")
def agreement(konvid: pd.DataFrame) -> dict[str, dict]:
    """Figures per competitor, computed with every warning an error (none may escape)."""
    mos = konvid["mos"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return {name: competitor_agreement(konvid[name].to_numpy(), mos)
                for name in COMPETITORS}


@pytest.mark.parametrize("name", COMPETITORS)
def test_figures_equal_scipy(konvid: pd.DataFrame, agreement: dict, name: str) -> None:
    x, y = konvid[name].to_numpy(), konvid["mos"].to_numpy()
    got = agreement[name]
    assert got["n"] == 1200 and got["note"] is None and got["logistic_converged"] is True
    assert got["srcc"] == pytest.approx(spearmanr(x, y)[0], abs=1e-9)
    assert got["krcc"] == pytest.approx(kendalltau(x, y)[0], abs=1e-9)
    assert got["plcc"] == pytest.approx(pearsonr(x, y)[0], abs=1e-9)
    params, _ = curve_fit(_logistic, x, y, p0=[y.max(), y.min(), x.mean(), x.std() / 4])
    fitted = _logistic(x, *params)
    assert got["logistic_params"] == pytest.approx(list(params), rel=1e-6)
    assert got["plcc_logistic"] == pytest.approx(pearsonr(fitted, y)[0], rel=1e-6)
    assert got["rmse_logistic"] == pytest.approx(np.sqrt(np.mean((y - fitted) ** 2)), rel=1e-6)


def test_published_figures(agreement: dict) -> None:
    # SOURCES.md and the issue: DOVER technical 0.861 (aesthetic 0.843), NIQE about -0.54.
    assert round(agreement["dover_technical"]["srcc"], 3) == 0.861
    assert round(agreement["dover_aesthetic"]["srcc"], 3) == 0.843
    assert agreement["niqe"]["srcc"] == pytest.approx(-0.54, abs=0.01)
    # NIQE: lower is better, so its rank correlation is negative but the logistic flips it.
    assert agreement["niqe"]["srcc"] < 0 < agreement["niqe"]["plcc_logistic"]


def _resamples(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, n, n) for _ in range(1000)]


def test_srcc_interval_is_the_percentile_bootstrap(konvid: pd.DataFrame,
                                                   agreement: dict) -> None:
    x, y = konvid["niqe"].to_numpy(), konvid["mos"].to_numpy()
    stats = [spearmanr(x[idx], y[idx])[0] for idx in _resamples(len(x))]
    expected = np.percentile(stats, [2.5, 97.5])
    assert agreement["niqe"]["srcc_ci95"] == pytest.approx(list(expected), abs=1e-9)


def test_plcc_logistic_interval_refits_each_resample(konvid: pd.DataFrame,
                                                      agreement: dict) -> None:
    x, y = konvid["dover_technical"].to_numpy(), konvid["mos"].to_numpy()
    start = agreement["dover_technical"]["logistic_params"]
    stats = []
    for idx in _resamples(len(x)):
        params, _ = curve_fit(_logistic, x[idx], y[idx], p0=start)
        stats.append(pearsonr(_logistic(x[idx], *params), y[idx])[0])
    expected = np.percentile(stats, [2.5, 97.5])
    assert agreement["dover_technical"]["plcc_logistic_ci95"] == pytest.approx(list(expected),
                                                                               rel=1e-6)


@pytest.mark.parametrize("name", COMPETITORS)
def test_intervals_contain_the_estimate(agreement: dict, name: str) -> None:
    got = agreement[name]
    for figure in ("srcc", "plcc_logistic"):
        low, high = got[f"{figure}_ci95"]
        assert low <= got[figure] <= high


def test_deterministic_and_json_ready(konvid: pd.DataFrame, agreement: dict) -> None:
    again = competitor_agreement(konvid["niqe"].to_numpy(), konvid["mos"].to_numpy())
    assert again == agreement["niqe"]
    text = json.dumps(agreement, allow_nan=False)
    assert json.loads(text) == agreement  # lists, not tuples; plain numbers


def _cv_srcc(features: np.ndarray, y: np.ndarray) -> float:
    """Independent 5-fold out-of-fold linear prediction, then Spearman with MOS."""
    folds = np.array_split(np.random.default_rng(0).permutation(len(y)), 5)
    design = np.column_stack([np.ones(len(y)), features])
    predicted = np.empty(len(y))
    for held_out in folds:
        train = np.setdiff1d(np.arange(len(y)), held_out)
        coef = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
        predicted[held_out] = design[held_out] @ coef
    return spearmanr(predicted, y)[0]


def test_intersection_gain_from_combining(konvid: pd.DataFrame) -> None:
    y = konvid["mos"].to_numpy()
    got = intersection_agreement({n: konvid[n].to_numpy() for n in COMPETITORS}, y)
    assert got["intersection_rows"] == 1200 and got["note"] is None
    for a in COMPETITORS:
        assert set(got["pairwise_srcc"][a]) == set(COMPETITORS) - {a}
        for b, r in got["pairwise_srcc"][a].items():
            assert r == pytest.approx(spearmanr(konvid[a], konvid[b])[0], abs=1e-9)
    for name in COMPETITORS:
        assert got["single_cv_srcc"][name] == pytest.approx(
            _cv_srcc(konvid[[name]].to_numpy(), y), abs=1e-9)
    combined = _cv_srcc(konvid[COMPETITORS].to_numpy(), y)
    assert got["combined_cv_srcc"] == pytest.approx(combined, abs=1e-9)
    assert got["best_single"] == "dover_technical"
    assert got["best_single_cv_srcc"] == got["single_cv_srcc"]["dover_technical"]
    assert got["gain"] == pytest.approx(combined - got["best_single_cv_srcc"], abs=1e-12)
    assert got["gain"] > 0
    json.dumps(got, allow_nan=False)


# --- edge cases: nulls with a note, no warnings, never a crash -----------------------

LOGISTIC_NONE = {"plcc_logistic": None, "rmse_logistic": None, "logistic_params": None,
                 "logistic_converged": False, "plcc_logistic_ci95": None}
CORRELATIONS_NONE = {"srcc": None, "krcc": None, "plcc": None, "srcc_ci95": None}


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.usefixtures("no_warnings")
@pytest.mark.parametrize("rows", [0, 1, 2])
def test_fewer_than_three_rows(niqe_rows: pd.DataFrame, rows: int) -> None:
    head = niqe_rows.head(rows)
    got = competitor_agreement(head["niqe"].to_numpy(), head["mos"].to_numpy())
    assert got == {"n": rows, **CORRELATIONS_NONE, **LOGISTIC_NONE,
                   "note": "fewer than 3 rows: no correlations"}


@pytest.mark.usefixtures("no_warnings")
def test_constant_score_and_constant_mos(niqe_rows: pd.DataFrame) -> None:
    mos = niqe_rows["mos"].to_numpy()
    got = competitor_agreement(np.full(len(mos), 4.2), mos)
    assert got == {"n": 1200, **CORRELATIONS_NONE, **LOGISTIC_NONE,
                   "note": "constant score: no correlations"}
    got = competitor_agreement(niqe_rows["niqe"].to_numpy(), np.full(len(mos), 3.0))
    assert got["srcc"] is None and got["note"] == "constant MOS: no correlations"


@pytest.mark.usefixtures("no_warnings")
def test_four_rows_correlate_but_do_not_fit(niqe_rows: pd.DataFrame) -> None:
    head = niqe_rows.head(4)
    x, y = head["niqe"].to_numpy(), head["mos"].to_numpy()
    got = competitor_agreement(x, y)
    assert got["n"] == 4 and got["note"] == "fewer than 5 rows: no logistic fit"
    assert got["srcc"] == pytest.approx(spearmanr(x, y)[0], abs=1e-9)
    assert got["krcc"] == pytest.approx(kendalltau(x, y)[0], abs=1e-9)
    assert {k: got[k] for k in LOGISTIC_NONE} == LOGISTIC_NONE


@pytest.mark.usefixtures("no_warnings")
def test_non_finite_pairs_are_dropped(niqe_rows: pd.DataFrame) -> None:
    x, y = niqe_rows["niqe"].to_numpy().copy(), niqe_rows["mos"].to_numpy().copy()
    x[:50], y[50:60] = np.nan, np.inf
    got = competitor_agreement(x, y)
    assert got["n"] == 1140
    assert got["srcc"] == pytest.approx(spearmanr(x[60:], y[60:])[0], abs=1e-9)


@pytest.mark.usefixtures("no_warnings")
def test_a_fit_that_does_not_converge(niqe_rows: pd.DataFrame) -> None:
    # Four tied scores and one outlier: curve_fit gives up, the correlations still stand.
    got = competitor_agreement(np.array([1.0, 1.0, 1.0, 1.0, 2.0]),
                               niqe_rows["mos"].to_numpy()[:5])
    assert got["srcc"] is not None
    assert {k: got[k] for k in LOGISTIC_NONE} == LOGISTIC_NONE
    assert got["note"] == "logistic fit not converged or not identified: no logistic figures"


@pytest.mark.usefixtures("no_warnings")
def test_a_fit_that_raises(niqe_rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    def fails(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr("scipy.optimize.curve_fit", fails)
    got = competitor_agreement(niqe_rows["niqe"].to_numpy(), niqe_rows["mos"].to_numpy())
    assert got["logistic_converged"] is False and got["plcc_logistic"] is None
    assert got["note"] == "logistic fit not converged or not identified: no logistic figures"


@pytest.mark.usefixtures("no_warnings")
def test_intersection_with_one_competitor(niqe_rows: pd.DataFrame) -> None:
    y = niqe_rows["mos"].to_numpy()
    got = intersection_agreement({"niqe": niqe_rows["niqe"].to_numpy()}, y)
    assert got["note"] == "one competitor" and got["intersection_rows"] == 1200
    assert got["pairwise_srcc"] == {"niqe": {}}
    assert got["single_cv_srcc"]["niqe"] == pytest.approx(
        _cv_srcc(niqe_rows[["niqe"]].to_numpy(), y), abs=1e-9)
    assert got["best_single"] == "niqe"
    assert got["best_single_cv_srcc"] == got["single_cv_srcc"]["niqe"]
    assert got["combined_cv_srcc"] is None and got["gain"] is None


@pytest.mark.usefixtures("no_warnings")
def test_intersection_with_fewer_than_ten_rows(niqe_rows: pd.DataFrame) -> None:
    head = niqe_rows.head(9)
    scores = {"niqe": head["niqe"].to_numpy(), "mos_as_score": head["mos"].to_numpy()}
    got = intersection_agreement(scores, head["mos"].to_numpy())
    assert got == {"intersection_rows": 9,
                   "pairwise_srcc": {"niqe": {"mos_as_score": pytest.approx(
                       spearmanr(head["niqe"], head["mos"])[0], abs=1e-9)},
                                     "mos_as_score": {"niqe": pytest.approx(
                                         spearmanr(head["niqe"], head["mos"])[0], abs=1e-9)}},
                   "single_cv_srcc": {"niqe": None, "mos_as_score": None},
                   "best_single": None, "best_single_cv_srcc": None,
                   "combined_cv_srcc": None, "gain": None,
                   "note": "fewer than 10 intersection rows: no cross-validation"}


@pytest.mark.usefixtures("no_warnings")
def test_intersection_with_no_rows_or_constant_scores(niqe_rows: pd.DataFrame) -> None:
    empty = intersection_agreement({"a": np.array([]), "b": np.array([])}, np.array([]))
    assert empty["intersection_rows"] == 0 and empty["pairwise_srcc"] == {"a": {"b": None},
                                                                          "b": {"a": None}}
    y = niqe_rows["mos"].to_numpy()
    flat = intersection_agreement({"flat": np.ones(len(y)), "niqe": niqe_rows["niqe"]}, y)
    assert flat["pairwise_srcc"]["flat"]["niqe"] is None
    assert flat["single_cv_srcc"]["flat"] is None and flat["best_single"] == "niqe"


def test_misaligned_arrays_are_a_caller_error(niqe_rows: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="aligned"):
        competitor_agreement(niqe_rows["niqe"].to_numpy(), niqe_rows["mos"].to_numpy()[:-1])
    with pytest.raises(ValueError, match="aligned"):
        intersection_agreement({"niqe": niqe_rows["niqe"].to_numpy()[:-1]},
                               niqe_rows["mos"].to_numpy())


# --- gate -----------------------------------------------------------------------------

GATE_INPUT = {"dover_technical": {"srcc": 0.861, "plcc_logistic": 0.86, "note": None},
              "niqe": {"srcc": -0.412, "plcc_logistic": 0.541, "note": None},
              "broken": {"srcc": None, "plcc_logistic": None,
                         "note": "constant score: no correlations"}}


def test_gate_with_one_threshold_for_everyone() -> None:
    assert gate_failures(GATE_INPUT, 0.5, None) == [
        "competitor 'niqe': |srcc| 0.412 below min_abs_srcc 0.500",
        "competitor 'broken': srcc is None (constant score: no correlations), "
        "min_abs_srcc 0.500"]


def test_gate_with_thresholds_per_competitor() -> None:
    failures = gate_failures(GATE_INPUT, {"dover_technical": 0.9},
                             {"niqe": 0.6, "missing": 0.1})
    assert failures == [
        "competitor 'dover_technical': |srcc| 0.861 below min_abs_srcc 0.900",
        "competitor 'niqe': |plcc_logistic| 0.541 below min_abs_plcc_logistic 0.600",
        "competitor 'missing': no agreement figures, min_abs_plcc_logistic 0.100"]


def test_gate_without_thresholds_or_on_real_figures(agreement: dict) -> None:
    assert gate_failures(GATE_INPUT, None, None) == []
    assert gate_failures(agreement, 0.5, 0.5) == []
    assert gate_failures(agreement, {"niqe": 0.6}, None) == [
        f"competitor 'niqe': |srcc| {abs(agreement['niqe']['srcc']):.3f} "
        "below min_abs_srcc 0.600"]


def test_intervals_do_not_depend_on_how_many_resamples_are_held_at_once(
        niqe_rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by drawing resamples in blocks; the stream, and so every
    interval, is the same whatever the block size."""
    import materializer.agreement as agreement

    rows = niqe_rows.iloc[:200]
    whole = competitor_agreement(rows["niqe"].to_numpy(), rows["mos"].to_numpy())
    monkeypatch.setattr(agreement, "BLOCK_CELLS", 7 * 200)  # 7 resamples per block
    blocked = competitor_agreement(rows["niqe"].to_numpy(), rows["mos"].to_numpy())
    assert blocked == whole and whole["srcc_ci95"] is not None
