"""Statistics for multi-seed studies, in plain numpy.

- `describe`: n, mean, std (ddof=1), min, max, best, median, bootstrap CI of the mean.
- `bootstrap_mean_ci`: percentile bootstrap of the mean with an explicit seed.
- `welch_t_test`: Welch's unequal-variance t statistic, Welch-Satterthwaite df, two-sided p.
- `cluster_bootstrap_mean_ci`: the same, resampling whole clusters (training seeds): runs that share
  a trained model are not independent, and resampling them one by one would understate the spread.
- `compare`: the difference of two heads' means with a bootstrap CI (groups resampled
  independently; by cluster when clusters are given) and Welch's test (on cluster means when given).
- `seed_spread`: how much of the spread comes from training seeds vs sampling seeds.

The Student-t tail uses the regularised incomplete beta function, evaluated with Lentz's continued
fraction (no scipy dependency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _as_array(name: str, values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got {int((~np.isfinite(arr)).sum())} NaN/Inf")
    return arr


def bootstrap_mean_ci(
    values: Sequence[float], *, n_boot: int = 10_000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: resample n values with replacement n_boot times."""
    x = _as_array("values", values)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1.0 - ci) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def cluster_bootstrap_mean_ci(
    values: Sequence[float], clusters: Sequence, *, n_boot: int = 10_000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling clusters (all values of a drawn cluster enter)."""
    x = _as_array("values", values)
    c = np.asarray(clusters)
    if c.shape != x.shape:
        raise ValueError(f"clusters: expected one cluster label per value ({x.size}), got {c.size}")
    if x.size == 0:
        return (math.nan, math.nan)
    means = _boot_means(x, c, np.random.default_rng(seed), n_boot)
    alpha = (1.0 - ci) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


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
    x = _as_array("values", values)
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


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Welch's t-test of mean(a) - mean(b): {'t', 'df', 'p'} (two-sided). NaN when undefined."""
    x, y = _as_array("a", a), _as_array("b", b)
    if x.size < 2 or y.size < 2:
        return {"t": math.nan, "df": math.nan, "p": math.nan}
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se2 = va + vb
    diff = float(x.mean() - y.mean())
    if se2 == 0:
        return {
            "t": math.nan if diff == 0 else math.copysign(math.inf, diff),
            "df": math.nan,
            "p": 1.0 if diff == 0 else 0.0,
        }
    t = diff / math.sqrt(se2)
    df = se2**2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    return {"t": t, "df": float(df), "p": student_t_two_sided_p(t, df)}


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if not df > 0:
        raise ValueError(f"df: expected > 0, got {df}")
    return regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)


def regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) for 0 <= x <= 1, a, b > 0 (continued fraction, relative accuracy ~1e-12)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x: expected 0 <= x <= 1, got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_cf(1.0 - x, b, a) / b


def _beta_cf(x: float, a: float, b: float, max_iter: int = 500, eps: float = 1e-15) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise RuntimeError("incomplete beta continued fraction did not converge")


def _boot_means(
    x: np.ndarray, clusters: np.ndarray | None, rng: np.random.Generator, n_boot: int
) -> np.ndarray:
    """n_boot bootstrap means of x, resampling values, or whole clusters when labels are given."""
    if clusters is None:
        return x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    labels = np.unique(clusters)
    sums = np.array([x[clusters == k].sum() for k in labels])
    counts = np.array([(clusters == k).sum() for k in labels], dtype=np.float64)
    idx = rng.integers(0, labels.size, size=(n_boot, labels.size))
    return sums[idx].sum(axis=1) / counts[idx].sum(axis=1)


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
    x, y = _as_array("a", a), _as_array("b", b)
    ca = None if clusters_a is None else np.asarray(clusters_a)
    cb = None if clusters_b is None else np.asarray(clusters_b)
    for name, c, v in (("clusters_a", ca, x), ("clusters_b", cb, y)):
        if c is not None and c.shape != v.shape:
            raise ValueError(f"{name}: expected one cluster label per value ({v.size}), got {c.size}")
    out: dict[str, float] = {"diff": float(x.mean() - y.mean()) if x.size and y.size else math.nan}
    if x.size and y.size:
        rng = np.random.default_rng(seed)
        d = _boot_means(x, ca, rng, n_boot) - _boot_means(y, cb, rng, n_boot)
        alpha = (1.0 - ci) / 2.0
        out["ci_low"], out["ci_high"] = float(np.quantile(d, alpha)), float(np.quantile(d, 1.0 - alpha))
    else:
        out["ci_low"] = out["ci_high"] = math.nan
    out.update(
        {f"welch_{k}": v for k, v in welch_t_test(_cluster_means(x, ca), _cluster_means(y, cb)).items()}
    )
    return out


def seed_spread(values: Sequence[float], training_seeds: Sequence[int]) -> dict[str, float]:
    """Split the spread of run values into training-seed and sampling-seed parts.

    between_training_std: std (ddof=1) of the per-training-seed means (spread from training);
    within_training_std: root mean of the within-training-seed variances (ddof=1), i.e. the
    spread the sampler adds for a fixed trained model; 0 for a deterministic head.
    """
    x = _as_array("values", values)
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
