"""How well each second-opinion scorer agrees with subjective MOS.

The figures follow the video-quality field's evaluation (VQEG four-parameter logistic,
as in VIDEVAL and FAST-VQA): rank correlations, Pearson before and after the logistic
mapping, bootstrap intervals, and the cross-validated gain from combining scorers.
Arrays go in; plain JSON-ready numbers, lists and dicts come out (None, never NaN).
scipy is imported inside the functions because this module is imported at workflow
parse time, which must stay light.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import numpy as np

BOOTSTRAP_RESAMPLES = 1000
CV_FOLDS = 5
MIN_CORRELATION_ROWS = 3
MIN_LOGISTIC_ROWS = 5
MIN_CV_ROWS = 10

Threshold = float | Mapping[str, float] | None


_QUIET_LOCK = threading.RLock()


@contextmanager
def _quiet() -> Iterator[None]:
    """Keep scipy's and numpy's warnings on degenerate input from reaching the caller.

    ``catch_warnings`` swaps process-wide filters, and workflow table jobs run as threads
    of one process: two overlapping blocks would restore each other's filters (warnings
    leaking, or silenced for good), so the blocks take turns.
    """
    with _QUIET_LOCK, warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def _number(value: float) -> float | None:
    """A float for JSON, or None where the figure is undefined (NaN or infinite)."""
    number = float(value)
    return number if np.isfinite(number) else None


def _finite_pairs(scores: np.ndarray, mos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The aligned pairs where both values are finite (misaligned arrays are a caller bug)."""
    x = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(mos, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"scores ({x.size}) and mos ({y.size}) must be aligned")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def logistic(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """VQEG four-parameter logistic; |b4| keeps the slope scale positive.

    ``(b1 - b2) / (1 + exp(-z)) + b2`` as ``(b1 - b2) * expit(z) + b2``: numpy's SIMD
    ``exp`` can differ in the last bit with an array's place in memory, and an
    ill-conditioned fit can end elsewhere; scipy's ``expit`` is the same scalar function
    for every element (see also ``IDENTIFIED``).
    """
    from scipy.special import expit

    return (b1 - b2) * expit((x - b3) / np.abs(b4)) + b2


IDENTIFIED = 1e4
"""A fit whose parameter standard error exceeds this many times the parameter is not
identified: the data do not pin the curve down (a step between two groups of scores
leaves the midpoint and slope free), so where the optimiser stops depends on rounding
in the last bit, and its figures would not repeat from run to run."""


def _fit_logistic(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """Fitted [b1..b4], or None when the fit fails, is not identified (``IDENTIFIED``),
    or maps every score to one value."""
    from scipy.optimize import curve_fit

    try:
        params, covariance = curve_fit(logistic, x, y, p0=start)
    except (RuntimeError, ValueError, TypeError, FloatingPointError):
        return None
    spread = np.sqrt(np.abs(np.diag(covariance)))
    if not (np.all(np.isfinite(spread))
            and np.all(spread <= IDENTIFIED * np.maximum(np.abs(params), 1e-12))):
        return None
    fitted = logistic(x, *params)
    if not (np.all(np.isfinite(params)) and np.all(np.isfinite(fitted)) and np.ptp(fitted) > 0):
        return None
    return params


def _logistic_start(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The customary start: MOS range for the plateaus, score centre and spread for the rest."""
    return np.array([y.max(), y.min(), x.mean(), x.std() / 4.0])


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r, NaN when either side is constant."""
    from scipy.stats import pearsonr

    return float(pearsonr(a, b)[0])


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the same row of ``b`` (rows must not be constant).

    Clipped to [-1, 1] as scipy does, so rounding cannot report r = 1.0000000000000002.
    """
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    r = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


BLOCK_CELLS = 1 << 21
"""Resampled values held at once (16 MiB of float64 per array), whatever the row count."""


def _resamples(n: int) -> Iterator[np.ndarray]:
    """Bootstrap row indices in blocks of resamples, one resample per row. Drawn from one
    generator in turn, so the stream (and the interval) does not depend on the block size,
    while memory stays bounded for a table of a million rows."""
    rng = np.random.default_rng(0)
    per_block = max(1, BLOCK_CELLS // n)
    for start in range(0, BOOTSTRAP_RESAMPLES, per_block):
        yield rng.integers(0, n, (min(per_block, BOOTSTRAP_RESAMPLES - start), n))


def _interval(values: np.ndarray) -> list[float] | None:
    """Percentile 95% interval over the resamples where the statistic is defined."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def _bootstrap_srcc(x: np.ndarray, y: np.ndarray) -> list[float] | None:
    """srcc interval: rank a block of resamples at once, then a row-wise Pearson of ranks.

    Resamples that drew a constant side are skipped (tested exactly, not by rounding noise).
    """
    from scipy.stats import rankdata

    values = []
    for idx in _resamples(x.size):
        xs, ys = x[idx], y[idx]
        defined = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
        values.append(_rowwise_pearson(rankdata(xs[defined], axis=1),
                                       rankdata(ys[defined], axis=1)))
    return _interval(np.concatenate(values))


def _bootstrap_plcc_logistic(x: np.ndarray, y: np.ndarray,
                             params: np.ndarray) -> list[float] | None:
    """plcc_logistic interval: each resample refits, warm-started from the full-sample fit.

    Only the fits loop (curve_fit takes one problem at a time); mapping and Pearson run on
    all resamples at once. Resamples whose fit fails or whose MOS is constant are skipped.
    """
    values = []
    for idx in _resamples(x.size):
        xs, ys = x[idx], y[idx]
        refits = np.array([_refit(xs[i], ys[i], params) for i in range(len(idx))])
        fitted = logistic(xs, *(column[:, None] for column in refits.T))
        defined = (np.isfinite(refits).all(axis=1) & (np.ptp(ys, axis=1) > 0)
                   & np.isfinite(fitted).all(axis=1) & (np.ptp(fitted, axis=1) > 0))
        values.append(_rowwise_pearson(fitted[defined], ys[defined]))
    return _interval(np.concatenate(values))


def _refit(x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """One resample's logistic parameters, NaN when its fit is unusable."""
    params = _fit_logistic(x, y, start)
    return np.full(4, np.nan) if params is None else params


def _empty_figures(n: int, note: str | None) -> dict:
    """Every figure undefined; filled in as far as the data allow."""
    return {"n": n, "srcc": None, "krcc": None, "plcc": None, "srcc_ci95": None,
            "plcc_logistic": None, "rmse_logistic": None, "logistic_params": None,
            "logistic_converged": False, "plcc_logistic_ci95": None, "note": note}


def _why_no_correlations(x: np.ndarray, y: np.ndarray) -> str | None:
    """The reason correlations are undefined, or None when they can be computed."""
    if x.size < MIN_CORRELATION_ROWS:
        return f"fewer than {MIN_CORRELATION_ROWS} rows: no correlations"
    if np.ptp(x) == 0:
        return "constant score: no correlations"
    if np.ptp(y) == 0:
        return "constant MOS: no correlations"
    return None


def _correlations(x: np.ndarray, y: np.ndarray) -> dict:
    """Rank and raw Pearson correlations with the srcc bootstrap interval."""
    from scipy.stats import kendalltau, spearmanr

    return {"srcc": _number(spearmanr(x, y)[0]), "krcc": _number(kendalltau(x, y)[0]),
            "plcc": _number(_pearson(x, y)), "srcc_ci95": _bootstrap_srcc(x, y)}


def _logistic_figures(x: np.ndarray, y: np.ndarray) -> dict | None:
    """Figures after the logistic mapping, or None when the fit does not converge."""
    params = _fit_logistic(x, y, _logistic_start(x, y))
    if params is None:
        return None
    fitted = logistic(x, *params)
    return {"plcc_logistic": _number(_pearson(fitted, y)),
            "rmse_logistic": _number(np.sqrt(np.mean((y - fitted) ** 2))),
            "logistic_params": [float(p) for p in params], "logistic_converged": True,
            "plcc_logistic_ci95": _bootstrap_plcc_logistic(x, y, params)}


def competitor_agreement(scores: np.ndarray, mos: np.ndarray) -> dict:
    """Agreement of one scorer with MOS over the rows given (non-finite pairs dropped).

    Keys: n, srcc, krcc, plcc, srcc_ci95, plcc_logistic, rmse_logistic, logistic_params,
    logistic_converged, plcc_logistic_ci95 and note (why some figures are None, else None).
    """
    x, y = _finite_pairs(scores, mos)
    with _quiet():
        why = _why_no_correlations(x, y)
        figures = _empty_figures(int(x.size), why)
        if why is not None:
            return figures
        figures.update(_correlations(x, y))
        if x.size < MIN_LOGISTIC_ROWS:
            figures["note"] = f"fewer than {MIN_LOGISTIC_ROWS} rows: no logistic fit"
            return figures
        logistic = _logistic_figures(x, y)
        if logistic is None:
            figures["note"] = "logistic fit not converged or not identified: no logistic figures"
            return figures
        figures.update(logistic)
    return figures


def _srcc(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman rank correlation, None where undefined (too few rows or a constant side)."""
    from scipy.stats import spearmanr

    if a.size < MIN_CORRELATION_ROWS or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return _number(spearmanr(a, b)[0])


def _aligned(scores: Mapping[str, np.ndarray], mos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores as an (n, k) matrix with MOS, keeping rows finite in every column."""
    y = np.asarray(mos, dtype=float).ravel()
    columns = [np.asarray(s, dtype=float).ravel() for s in scores.values()]
    if any(c.shape != y.shape for c in columns):
        raise ValueError("every competitor's scores must be aligned with mos")
    matrix = np.column_stack(columns) if columns else np.empty((y.size, 0))
    keep = np.isfinite(y) & np.isfinite(matrix).all(axis=1)
    return matrix[keep], y[keep]


def _pairwise_srcc(names: list[str], matrix: np.ndarray) -> dict[str, dict[str, float | None]]:
    """Spearman between every ordered pair of different competitors."""
    return {a: {b: _srcc(matrix[:, i], matrix[:, j]) for j, b in enumerate(names) if j != i}
            for i, a in enumerate(names)}


def _cv_srcc(features: np.ndarray, y: np.ndarray, folds: list[np.ndarray]) -> float | None:
    """Spearman of pooled out-of-fold linear predictions (with intercept) against MOS.

    None when every feature is constant: the pooled predictions would then only rank the
    folds' mean MOS, which says nothing about the scorer.
    """
    if not np.ptp(features, axis=0).any():
        return None
    design = np.column_stack([np.ones(y.size), features])
    predicted = np.empty(y.size)
    for held_out in folds:
        train = np.ones(y.size, dtype=bool)
        train[held_out] = False
        coef = np.linalg.lstsq(design[train], y[train], rcond=None)[0]
        predicted[held_out] = design[held_out] @ coef
    return _srcc(predicted, y)


def _best(single: dict[str, float | None]) -> tuple[str | None, float | None]:
    """The competitor with the highest defined single cv srcc (first one on a tie)."""
    defined = {name: r for name, r in single.items() if r is not None}
    if not defined:
        return None, None
    name = max(defined, key=defined.__getitem__)
    return name, defined[name]


def _cv_figures(names: list[str], matrix: np.ndarray, y: np.ndarray) -> dict:
    """Single and combined 5-fold cv srcc, folds from a fixed permutation of table order."""
    folds = np.array_split(np.random.default_rng(0).permutation(y.size), CV_FOLDS)
    single = {name: _cv_srcc(matrix[:, [i]], y, folds) for i, name in enumerate(names)}
    best, best_r = _best(single)
    figures = {"single_cv_srcc": single, "best_single": best, "best_single_cv_srcc": best_r,
               "combined_cv_srcc": None, "gain": None}
    if len(names) > 1:
        combined = _cv_srcc(matrix, y, folds)
        figures["combined_cv_srcc"] = combined
        if combined is not None and best_r is not None:
            figures["gain"] = combined - best_r
    return figures


def _intersection_notes(names: list[str], n: int) -> list[str]:
    """Why some intersection figures are None."""
    notes = []
    if not names:
        notes.append("no competitors")
    elif len(names) == 1:
        notes.append("one competitor")
    if n < MIN_CV_ROWS:
        notes.append(f"fewer than {MIN_CV_ROWS} intersection rows: no cross-validation")
    return notes


def intersection_agreement(scores: Mapping[str, np.ndarray], mos: np.ndarray) -> dict:
    """Pairwise agreement and the cross-validated gain from combining all competitors.

    ``scores`` holds aligned arrays restricted to rows where every competitor is ok, in
    table order. Keys: intersection_rows, pairwise_srcc, single_cv_srcc, best_single,
    best_single_cv_srcc, combined_cv_srcc, gain and note.
    """
    names = list(scores)
    with _quiet():
        matrix, y = _aligned(scores, mos)
        notes = _intersection_notes(names, y.size)
        figures = {"intersection_rows": int(y.size), "pairwise_srcc": _pairwise_srcc(names, matrix),
                   "single_cv_srcc": dict.fromkeys(names), "best_single": None,
                   "best_single_cv_srcc": None, "combined_cv_srcc": None, "gain": None}
        if names and y.size >= MIN_CV_ROWS:
            figures.update(_cv_figures(names, matrix, y))
    figures["note"] = "; ".join(notes) or None
    return figures


def _threshold_for(threshold: Threshold, name: str) -> float | None:
    """The threshold that applies to one competitor (None: not gated)."""
    if isinstance(threshold, Mapping):
        threshold = threshold.get(name)
    return None if threshold is None else float(threshold)


def _gate_message(name: str, figures: Mapping | None, figure: str, option: str,
                  limit: float) -> str | None:
    """One line when the figure is missing, None, or its absolute value is below the limit."""
    if figures is None:
        return f"competitor {name!r}: no agreement figures, {option} {limit:.3f}"
    value = figures.get(figure)
    if value is None:
        why = figures.get("note") or "undefined"
        return f"competitor {name!r}: {figure} is None ({why}), {option} {limit:.3f}"
    if abs(value) < limit:
        return f"competitor {name!r}: |{figure}| {abs(value):.3f} below {option} {limit:.3f}"
    return None


def _gated_names(agreement: Mapping[str, Mapping], thresholds: list[Threshold]) -> list[str]:
    """Competitors in agreement order, then any a threshold mapping names but agreement lacks.

    A gate configured for a missing competitor fails closed rather than passing silently.
    """
    named = [name for t in thresholds if isinstance(t, Mapping) for name in t]
    return list(dict.fromkeys([*agreement, *named]))


def gate_failures(agreement: Mapping[str, Mapping], min_abs_srcc: Threshold,
                  min_abs_plcc_logistic: Threshold,
                  named: Callable[[str], str] = str) -> list[str]:
    """Messages for competitors whose agreement falls below a configured floor.

    ``agreement`` maps competitor name to its competitor_agreement figures; a threshold is
    None (no gate), one number for everyone, or a mapping {name: number}. ``named`` shows
    an option as the user gave it (``--min-abs-srcc`` on the command line).
    """
    gates = [("srcc", named("min_abs_srcc"), min_abs_srcc),
             ("plcc_logistic", named("min_abs_plcc_logistic"), min_abs_plcc_logistic)]
    messages = (_gate_message(name, agreement.get(name), figure, option, limit)
                for name in _gated_names(agreement, [min_abs_srcc, min_abs_plcc_logistic])
                for figure, option, threshold in gates
                if (name in agreement or isinstance(threshold, Mapping))
                and (limit := _threshold_for(threshold, name)) is not None)
    return [message for message in messages if message is not None]
