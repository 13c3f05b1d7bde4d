"""Robust aggregates of closed-loop scores (Agarwal et al. 2021, "Deep RL at the Edge of the
Statistical Precipice"; the definitions of its `rliable` package), with CIs from the study's
hierarchical, scenario-stratified bootstrap (`studies.resampling`).

- `iqm`: interquartile mean, the mean of the middle 50% of scores: `scipy.stats.trim_mean(x, 0.25)`
  (int(0.25 n) scores cut from each end), over every episode score of a head.
- `probability_of_improvement`: P(X > Y) = 1/M sum_m P(X_m > Y_m), scenarios m playing the paper's
  tasks: P(X_m > Y_m) = 1/(N K) sum_i sum_j S(x_mi, y_mj), S = 1 if x > y, 1/2 if equal, 0 otherwise,
  over the N runs of X and K runs of Y, a run's score on m being its mean over m's episodes
  (the Mann-Whitney U statistic normalised by N K).
- `performance_profile`: the fraction of episodes with score >= tau, averaged over scenarios with
  equal weight (rliable counts score > tau; with route scores, >= makes tau = 100 the share of clean
  completions).

Axes: leading axes of every input are bootstrap replicates; scores are (..., n). NaN = missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy import stats

from studies.resampling import ScoreTable, hierarchical_bootstrap

PROFILE_TAUS = np.linspace(0.0, 100.0, 51)


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean over the last axis: (..., n) -> (...). NaNs are left out."""
    x = np.asarray(scores, dtype=np.float64)
    if not np.isnan(x).any():
        return stats.trim_mean(x, 0.25, axis=-1)
    flat = x.reshape(-1, x.shape[-1])
    out = np.array(
        [stats.trim_mean(row[~np.isnan(row)], 0.25) if (~np.isnan(row)).any() else np.nan for row in flat]
    )
    return out.reshape(x.shape[:-1])


def improvement_probability(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) of two samples, ties counted 1/2: (..., n), (..., k) -> (...). NaNs are left out."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    xv, yv = x[..., :, None], y[..., None, :]
    valid = ~(np.isnan(xv) | np.isnan(yv))
    wins = np.where(valid, (xv > yv) + 0.5 * (xv == yv), 0.0).sum(axis=(-2, -1))
    return wins / valid.sum(axis=(-2, -1))


def probability_of_improvement(x: ScoreTable, y: ScoreTable) -> np.ndarray:
    """P(X > Y) averaged over the scenarios both tables have: (...)."""
    common = [m for m in x.strata if m in y.strata]
    if not common:
        raise ValueError(f"tables: expected shared scenarios, got {sorted(x.strata)} and {sorted(y.strata)}")
    per = [improvement_probability(x.run_scores(m), y.run_scores(m)) for m in common]
    return np.mean(per, axis=0)


def performance_profile(table: ScoreTable, taus: np.ndarray = PROFILE_TAUS) -> np.ndarray:
    """Fraction of episodes with score >= tau, averaged over scenarios: (..., len(taus))."""
    per = []
    for arr in table.strata.values():
        flat = arr.reshape(*arr.shape[:-3], -1)[..., None]  # (..., n, 1)
        valid = ~np.isnan(flat)
        hit = (valid & (flat >= taus)).sum(axis=-2)
        per.append(hit / np.maximum(valid.sum(axis=-2), 1))
    return np.mean(per, axis=0)


def _ci(result, index=()) -> dict:
    return {
        "estimate": float(result.estimate[index]),
        "ci_low": float(result.low[index]),
        "ci_high": float(result.high[index]),
    }


def robust_summary(
    tables: dict[str, ScoreTable], *, n_boot: int = 10_000, ci: float = 0.95, seed: int = 0
) -> dict:
    """IQM and mean of episode scores per head, P(X > Y) for every pair of heads, performance
    profiles; each with a hierarchical bootstrap CI (`studies.resampling`), seeded."""
    out: dict = {"iqm": {}, "mean": {}, "probability_of_improvement": {}, "profile": {}}
    for key, table in tables.items():
        out["iqm"][key] = _ci(
            hierarchical_bootstrap([table], lambda t: iqm(t[0].pooled()), n_boot=n_boot, ci=ci, seed=seed)
        )
        out["mean"][key] = _ci(
            hierarchical_bootstrap(
                [table], lambda t: np.nanmean(t[0].pooled(), axis=-1), n_boot=n_boot, ci=ci, seed=seed
            )
        )
    for a, b in combinations(list(tables), 2):
        res = hierarchical_bootstrap(
            [tables[a], tables[b]],
            lambda t: probability_of_improvement(t[0], t[1]),
            n_boot=n_boot,
            ci=ci,
            seed=seed,
        )
        out["probability_of_improvement"][f"{a} > {b}"] = {"x": a, "y": b, **_ci(res)}
    profile_boot = max(200, n_boot // 10)  # bands only: fewer replicates keep it cheap
    out["profile"]["taus"] = PROFILE_TAUS.tolist()
    for key, table in tables.items():
        res = hierarchical_bootstrap(
            [table], lambda t: performance_profile(t[0]), n_boot=profile_boot, ci=ci, seed=seed
        )
        out["profile"][key] = {
            "fraction": res.estimate.tolist(),
            "low": np.asarray(res.low).tolist(),
            "high": np.asarray(res.high).tolist(),
        }
    return out


def pairs(keys: Sequence[str]) -> list[tuple[str, str]]:
    return list(combinations(keys, 2))
