"""Classical statistics of multi-seed studies, on scipy.stats.

- `describe`: n, mean, std (ddof=1), min, max, best, median, bootstrap CI of the mean (runs resampled,
  or whole clusters such as training seeds).
- `bootstrap_mean_ci` / `cluster_bootstrap_mean_ci`: percentile bootstrap of the mean through
  `scipy.stats.bootstrap`; the cluster version resamples training seeds (runs that share a trained
  model are not independent, and resampling them one by one would understate the spread). Both are
  `studies.resampling.hierarchical_bootstrap` with one level.
- `welch_t_test`: `scipy.stats.ttest_ind(equal_var=False)`: t, Welch-Satterthwaite df, two-sided p,
  and the CI of the difference from Student-t quantiles.
- `compare`: the difference of two heads' means with a cluster-bootstrap CI and Welch's test on the
  per-cluster means.
- `seed_spread`: how much of the spread comes from training seeds vs sampling seeds.

The robust aggregates (IQM, probability of improvement, performance profiles) are in
`studies.robust`; variance components and power in `studies.power`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from studies.resampling import as_values, hierarchical_bootstrap, run_table


def bootstrap_mean_ci(
    values: Sequence[float], *, n_boot: int = 10_000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (values resampled with replacement)."""
    x = as_values("values", values)
    if x.size == 0:
        return (math.nan, math.nan)
    return cluster_bootstrap_mean_ci(x, np.arange(x.size), n_boot=n_boot, ci=ci, seed=seed)


def cluster_bootstrap_mean_ci(
    values: Sequence[float], clusters: Sequence, *, n_boot: int = 10_000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling clusters (all values of a drawn cluster enter)."""
    x = as_values("values", values)
    c = np.asarray(clusters)
    if c.shape != x.shape:
        raise ValueError(f"clusters: expected one cluster label per value ({x.size}), got {c.size}")
    if x.size == 0:
        return (math.nan, math.nan)
    table = run_table(x, c)
    out = hierarchical_bootstrap([table], _pooled_mean, n_boot=n_boot, ci=ci, seed=seed)
    return float(out.low), float(out.high)


def _pooled_mean(tables):
    (t,) = tables
    return np.nanmean(t.pooled(), axis=-1)  # NaN pads clusters of unequal size


def describe(
    values: Sequence[float],
    *,
    higher_is_better: bool = True,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
    clusters: Sequence | None = None,
) -> dict[str, float]:
    """Summary statistics; the CI resamples `clusters` (e.g. training seeds) when given, runs otherwise."""
    x = as_values("values", values)
    n = int(x.size)
    if n == 0:
        return {"n": 0}
    if clusters is None:
        low, high = bootstrap_mean_ci(x, n_boot=n_boot, ci=ci, seed=seed)
    else:
        low, high = cluster_bootstrap_mean_ci(x, clusters, n_boot=n_boot, ci=ci, seed=seed)
    return {
        "n": n,
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if n > 1 else math.nan,
        "min": float(x.min()),
        "max": float(x.max()),
        "best": float(x.max() if higher_is_better else x.min()),
        "median": float(np.median(x)),
        "ci_low": low,
        "ci_high": high,
    }


def welch_t_test(a: Sequence[float], b: Sequence[float], *, ci: float = 0.95) -> dict[str, float]:
    """Welch's t-test of mean(a) - mean(b): {'t', 'df', 'p', 'ci_low', 'ci_high'} (two-sided).

    NaN when undefined (fewer than two values in a group); with zero variance in both groups, t is
    +-inf and p is 0 when the means differ, NaN and p = 1 when they are equal."""
    x, y = as_values("a", a), as_values("b", b)
    nan = {"t": math.nan, "df": math.nan, "p": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    if x.size < 2 or y.size < 2:
        return nan
    diff = float(x.mean() - y.mean())
    if x.var(ddof=1) == 0 and y.var(ddof=1) == 0:
        return {
            **nan,
            "t": math.nan if diff == 0 else math.copysign(math.inf, diff),
            "p": 1.0 if diff == 0 else 0.0,
        }
    res = stats.ttest_ind(x, y, equal_var=False)
    low, high = res.confidence_interval(confidence_level=ci)
    return {
        "t": float(res.statistic),
        "df": float(res.df),
        "p": float(res.pvalue),
        "ci_low": float(low),
        "ci_high": float(high),
    }


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with df degrees of freedom."""
    if not df > 0:
        raise ValueError(f"df: expected > 0, got {df}")
    return float(stats.t.ppf(q, df))


def _cluster_means(x: np.ndarray, clusters: np.ndarray | None) -> np.ndarray:
    return x if clusters is None else np.array([x[clusters == k].mean() for k in np.unique(clusters)])


def compare(
    a: Sequence[float],
    b: Sequence[float],
    *,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
    clusters_a: Sequence | None = None,
    clusters_b: Sequence | None = None,
) -> dict[str, float]:
    """mean(a) - mean(b) with a bootstrap CI (each group resampled on its own, by cluster when
    clusters are given) and Welch's test (on the cluster means when clusters are given)."""
    x, y = as_values("a", a), as_values("b", b)
    ca = np.arange(x.size) if clusters_a is None else np.asarray(clusters_a)
    cb = np.arange(y.size) if clusters_b is None else np.asarray(clusters_b)
    for name, c, v in (("clusters_a", ca, x), ("clusters_b", cb, y)):
        if c.shape != v.shape:
            raise ValueError(f"{name}: expected one cluster label per value ({v.size}), got {c.size}")
    out: dict[str, float] = {"diff": float(x.mean() - y.mean()) if x.size and y.size else math.nan}
    if x.size and y.size:
        boot = hierarchical_bootstrap(
            [run_table(x, ca), run_table(y, cb)],
            lambda t: np.nanmean(t[0].pooled(), axis=-1) - np.nanmean(t[1].pooled(), axis=-1),
            n_boot=n_boot,
            ci=ci,
            seed=seed,
            pair_seeds=False,
        )
        out["ci_low"], out["ci_high"] = float(boot.low), float(boot.high)
    else:
        out["ci_low"] = out["ci_high"] = math.nan
    welch = welch_t_test(
        _cluster_means(x, None if clusters_a is None else ca),
        _cluster_means(y, None if clusters_b is None else cb),
    )
    out.update({f"welch_{k}": welch[k] for k in ("t", "df", "p")})
    return out


def seed_spread(values: Sequence[float], training_seeds: Sequence[int]) -> dict[str, float]:
    """Split the spread of run values into training-seed and sampling-seed parts.

    between_training_std: std (ddof=1) of the per-training-seed means (spread from training);
    within_training_std: root mean of the within-training-seed variances (ddof=1), i.e. the
    spread the sampler adds for a fixed trained model; 0 for a deterministic head.
    """
    x = as_values("values", values)
    seeds = np.asarray(training_seeds)
    if seeds.shape != x.shape:
        raise ValueError(f"training_seeds: expected one seed per value ({x.size}), got {seeds.size}")
    groups = [x[seeds == s] for s in np.unique(seeds)]
    means = np.array([g.mean() for g in groups])
    within = [g.var(ddof=1) for g in groups if g.size > 1]
    return {
        "between_training_std": float(means.std(ddof=1)) if means.size > 1 else math.nan,
        "within_training_std": float(math.sqrt(np.mean(within))) if within else math.nan,
    }
