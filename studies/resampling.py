"""The resampling of a study, written once: a hierarchical, stratified bootstrap on `scipy.stats.bootstrap`.

A study's closed-loop scores have structure (axes: T training seeds, S sampling seeds, E episodes):

    training seed -> sampling seed (runs of one trained model) -> episode, episodes grouped by scenario

- Runs of one training seed share a trained model: a training seed is drawn with all of its runs.
  The nested sampling seeds are not resampled again inside a drawn training seed: that would count
  their variance twice (Davison & Hinkley 1997, sec. 3.8: resample the top stage, keep the inner
  one). When there is a single training seed, the sampling seeds are the top level.
- Every run drives the same test-split episode seeds, so episodes are crossed with runs: one draw of
  episodes per bootstrap replicate applies to every run and every head (a head comparison stays paired
  on episodes). Episodes are drawn within each scenario (stratified, as rliable's stratified
  bootstrap draws runs within each task), so every replicate keeps the study's scenario mix.
- Heads that share training seeds (a refiner wraps the AE of the same seed) share the draw of
  training seeds (`pair_seeds`), so a difference between them is paired too.

Each independent draw (training seeds of a group of tables, episodes of a scenario) is one sample
handed to `scipy.stats.bootstrap` (`paired=False`: samples are resampled independently); the
statistic turns the drawn indices into resampled `ScoreTable`s. Missing scores are NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def as_values(name: str, values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(arr)).sum())} NaN/Inf")
    return arr


@dataclass(frozen=True)
class ScoreTable:
    """Scores of one head: `strata[scenario]` is (..., T, S, E) (leading axes: bootstrap replicates).

    `training_seeds` labels the T axis (heads with equal labels are paired); `episodes[scenario]`
    labels the E axis (the episode seeds: equal labels are the same episodes). NaN = missing.
    """

    strata: dict[str, np.ndarray]
    training_seeds: tuple
    episodes: dict[str, tuple]

    def pooled(self) -> np.ndarray:
        """Every score, (..., T * S * E_total)."""
        parts = [a.reshape(*a.shape[:-3], -1) for a in self.strata.values()]
        return np.concatenate(parts, axis=-1)

    def run_scores(self, stratum: str | None = None) -> np.ndarray:
        """Each run's mean score (over one stratum's episodes, or all of them): (..., T * S)."""
        arrays = [self.strata[stratum]] if stratum is not None else list(self.strata.values())
        joined = np.concatenate(arrays, axis=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN runs stay NaN
            runs = np.nanmean(joined, axis=-1)
        return runs.reshape(*runs.shape[:-2], -1)

    @property
    def shape(self) -> tuple[int, int]:
        first = next(iter(self.strata.values()))
        return first.shape[-3], first.shape[-2]


def score_table(
    scores: dict[tuple, float], *, training_seeds: Sequence, sampling_seeds: Sequence
) -> ScoreTable:
    """A `ScoreTable` from {(training_seed, sampling_seed, scenario, episode_seed): score}."""
    strata: dict[str, dict] = {}
    for (t, s, scenario, episode), value in scores.items():
        strata.setdefault(scenario, {})[(t, s, episode)] = float(value)
    t_index = {t: i for i, t in enumerate(training_seeds)}
    s_index = {s: i for i, s in enumerate(sampling_seeds)}
    arrays, episodes = {}, {}
    for scenario in sorted(strata):
        cells = strata[scenario]
        eps = tuple(sorted({e for _, _, e in cells}))
        e_index = {e: i for i, e in enumerate(eps)}
        arr = np.full((len(t_index), len(s_index), len(eps)), np.nan)
        for (t, s, e), v in cells.items():
            arr[t_index[t], s_index[s], e_index[e]] = v
        arrays[scenario], episodes[scenario] = arr, eps
    return ScoreTable(arrays, tuple(training_seeds), episodes)


def run_table(values: np.ndarray, clusters: np.ndarray) -> ScoreTable:
    """Per-run values grouped by cluster (e.g. training seed), as a one-stratum table with one
    episode per run; clusters of unequal size are padded with NaN."""
    labels = list(dict.fromkeys(np.asarray(clusters).tolist()))
    groups = [values[np.asarray(clusters) == k] for k in labels]
    arr = np.full((len(labels), max(g.size for g in groups), 1), np.nan)
    for i, g in enumerate(groups):
        arr[i, : g.size, 0] = g
    return ScoreTable({"runs": arr}, tuple(labels), {"runs": ("run",)})


@dataclass(frozen=True)
class BootstrapResult:
    estimate: np.ndarray  # the statistic on the data, () or (k,)
    low: np.ndarray
    high: np.ndarray
    distribution: np.ndarray  # (n_boot,) or (k, n_boot)


def _unit_axis(table: ScoreTable) -> int | None:
    """The top level with more than one unit: training seeds (0), else sampling seeds (1), else none."""
    t, s = table.shape
    return 0 if t > 1 else (1 if s > 1 else None)


def hierarchical_bootstrap(
    tables: Sequence[ScoreTable],
    statistic: Callable[[list[ScoreTable]], np.ndarray],
    *,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
    method: str = "percentile",
    pair_seeds: bool = True,
    batch: int | None = None,
) -> BootstrapResult:
    """Bootstrap CI of `statistic(tables)` (which maps tables with leading replicate axes to values
    of shape (...,) or (..., k)) under the resampling described in the module docstring."""
    if n_boot < 1:
        raise ValueError(f"n_boot: expected >= 1, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci: expected a level in (0, 1), got {ci}")
    # One sample per independent draw: ("unit", key) for top-level units, ("episodes", key) per stratum.
    draws: dict[tuple, int] = {}
    plan = []  # per table: (unit draw key or None, unit axis, {stratum: episode draw key or None})
    for i, table in enumerate(tables):
        axis = _unit_axis(table)
        unit_key = None
        if axis is not None:
            labels = table.training_seeds if axis == 0 else tuple(range(table.shape[1]))
            unit_key = ("unit", axis, labels) if pair_seeds else ("unit", axis, labels, i)
            draws[unit_key] = table.shape[axis]
        ep_keys = {}
        for stratum, arr in table.strata.items():
            n = arr.shape[-1]
            ep_keys[stratum] = ("episodes", stratum, table.episodes[stratum]) if n > 1 else None
            if n > 1:
                draws[ep_keys[stratum]] = n
        plan.append((unit_key, axis, ep_keys))
    keys = list(draws)

    def resampled(*idx: np.ndarray) -> list[ScoreTable]:
        idx = tuple(np.asarray(i, dtype=np.intp) for i in idx)
        drawn = dict(zip(keys, idx))
        lead = idx[0].shape[:-1] if idx else ()
        out = []
        for table, (unit_key, axis, ep_keys) in zip(tables, plan):
            t, s = table.shape
            strata = {}
            for stratum, arr in table.strata.items():
                e = arr.shape[-1]
                it = np.arange(t).reshape((1,) * len(lead) + (t,))
                js = np.arange(s).reshape((1,) * len(lead) + (s,))
                if unit_key is not None and axis == 0:
                    it = drawn[unit_key]
                elif unit_key is not None:
                    js = drawn[unit_key]
                key = ep_keys[stratum]  # None: a single episode (e == 1), nothing to draw
                ie = drawn[key] if key is not None else np.zeros((1,) * len(lead) + (e,), int)
                strata[stratum] = arr[it[..., :, None, None], js[..., None, :, None], ie[..., None, None, :]]
            out.append(ScoreTable(strata, table.training_seeds, table.episodes))
        return out

    estimate = np.asarray(statistic(resampled(*[np.arange(draws[k]) for k in keys])), dtype=np.float64)
    if not keys:  # nothing to resample: the statistic is known exactly
        return BootstrapResult(estimate, estimate.copy(), estimate.copy(), estimate[..., None])

    def stat(*idx, axis=-1):
        value = np.asarray(statistic(resampled(*idx)), dtype=np.float64)
        return np.moveaxis(value, 0, -1) if value.ndim > 1 else value  # scipy wants replicates last

    if batch is None:  # bound the memory of one vectorised call (replicates x cells x outputs)
        cells = sum(a.size for t in tables for a in t.strata.values())
        batch = int(max(16, min(n_boot, 4e6 // max(1, cells * max(1, estimate.size)))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate distributions (e.g. a deterministic head) are fine
        res = stats.bootstrap(
            [np.arange(draws[k]) for k in keys],
            stat,
            n_resamples=n_boot,
            vectorized=True,
            paired=False,
            confidence_level=ci,
            method=method,
            rng=np.random.default_rng(seed),
            batch=batch,
        )
    low, high = np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
    dist = np.asarray(res.bootstrap_distribution)
    if method == "percentile":
        # A constant distribution has a well-defined percentile interval: the constant.
        alpha = (1 - ci) / 2
        low = np.where(np.isnan(low), np.nanquantile(dist, alpha, axis=-1), low)
        high = np.where(np.isnan(high), np.nanquantile(dist, 1 - alpha, axis=-1), high)
    return BootstrapResult(estimate, low, high, dist)
