"""Variance components and power of a study design.

The closed-loop score of episode e (scenario m) in the run of training seed t, sampling seed s is

    y_tsme = mu_m + a_t + b_ts + c_me + r_tsme,   a ~ (0, var_training), b ~ (0, var_sampling),
                                                  c ~ (0, var_episode), r ~ (0, var_residual)

Episodes are crossed with runs (every run drives the same test seeds), scenarios are fixed strata with
E episodes each (N = M E per run). A comparison of two heads is the same model on the paired
difference A - B (same training seeds, same episodes), so its components already account for what
the heads share. The mean over a design (T, S, N) has variance

    V = var_training / T + var_sampling / (T S) + var_episode / N + var_residual / (T S N)

Components are estimated by the method of moments from the mean squares of the balanced design
(training seeds, sampling seeds within them, episodes within scenarios, residual), negative estimates
set to 0. The test of a mean difference is t = mean / sqrt(V) with Satterthwaite's degrees of freedom
for V as the combination (MS_T + MS_E - MS_R) / (T S N); its power at a true difference delta comes
from the noncentral t. `detectable_difference` inverts it (80% power, alpha 0.05 by default).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

from studies.resampling import ScoreTable


@dataclass(frozen=True)
class Components:
    """Variances (score units squared) of the model above; `identified` names what the data could separate."""

    training: float
    sampling: float
    episode: float
    residual: float
    scenarios: int
    identified: tuple[str, ...] = ("training", "sampling", "episode", "residual")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    def scaled(self, factor: float) -> Components:
        return Components(
            self.training * factor,
            self.sampling * factor,
            self.episode * factor,
            self.residual * factor,
            self.scenarios,
            self.identified,
        )


@dataclass(frozen=True)
class MeanSquares:
    ms_t: float
    ms_s: float
    ms_e: float
    ms_r: float
    df_t: int
    df_s: int
    df_e: int
    df_r: int


def _stacked(table: ScoreTable) -> tuple[np.ndarray, list[int]]:
    arrays = list(table.strata.values())
    if any(a.ndim != 3 for a in arrays):
        raise ValueError("table: expected (T, S, E) arrays without replicate axes")
    if any(np.isnan(a).any() for a in arrays):
        raise ValueError(
            "table: expected a complete design (every run drove every episode), got missing scores"
        )
    return np.concatenate(arrays, axis=-1), [a.shape[-1] for a in arrays]


def mean_squares(table: ScoreTable) -> MeanSquares:
    """The mean squares of a balanced (T, S, E per scenario) table."""
    y, sizes = _stacked(table)
    t, s, n = y.shape
    grand = y.mean()
    run = y.mean(axis=2)  # (T, S)
    seed = run.mean(axis=1)  # (T,)
    episode = y.mean(axis=(0, 1))  # (N,)
    ss_t = s * n * ((seed - grand) ** 2).sum()
    ss_s = n * ((run - seed[:, None]) ** 2).sum()
    ss_e, start = 0.0, 0
    for size in sizes:  # episode effects within each scenario (scenario means are fixed effects)
        block = episode[start : start + size]
        ss_e += t * s * ((block - block.mean()) ** 2).sum()
        start += size
    resid = y - run[:, :, None] - episode[None, None, :] + grand
    ss_r = (resid**2).sum()
    df = (t - 1, t * (s - 1), n - len(sizes), (t * s - 1) * (n - 1))
    ms = [ss / d if d > 0 else math.nan for ss, d in zip((ss_t, ss_s, ss_e, ss_r), df)]
    return MeanSquares(*ms, *df)


def components(table: ScoreTable) -> Components:
    """Method-of-moments variance components of one table (a head, or a paired difference)."""
    y, sizes = _stacked(table)
    t, s, n = y.shape
    m = mean_squares(table)
    ms_r = m.ms_r if m.df_r > 0 else 0.0
    identified = ["residual"] if m.df_r > 0 else []
    sampling = 0.0
    if m.df_s > 0:
        sampling = max(0.0, (m.ms_s - ms_r) / n)
        identified.append("sampling")
    # Without a second sampling seed, sampling variance stays inside the training-seed term.
    below_t = m.ms_s if m.df_s > 0 else ms_r
    training = max(0.0, (m.ms_t - below_t) / (s * n)) if m.df_t > 0 else 0.0
    if m.df_t > 0:
        identified.append("training")
    episode = max(0.0, (m.ms_e - ms_r) / (t * s)) if m.df_e > 0 else 0.0
    if m.df_e > 0:
        identified.append("episode")
    order = ("training", "sampling", "episode", "residual")
    return Components(
        float(training),
        float(sampling),
        float(episode),
        float(ms_r),
        len(sizes),
        tuple(k for k in order if k in identified),
    )


def difference_table(a: ScoreTable, b: ScoreTable) -> ScoreTable:
    """A - B paired by training seed, sampling-seed position and episode. A table with one sampling
    seed (a deterministic head, whose scores are the same under every seed) is paired with each of
    the other's sampling seeds."""
    if a.training_seeds != b.training_seeds or set(a.strata) != set(b.strata):
        raise ValueError(
            f"tables: expected the same training seeds and scenarios, got {a.training_seeds} / {sorted(a.strata)} "
            f"and {b.training_seeds} / {sorted(b.strata)}"
        )
    strata = {}
    for m in a.strata:
        sa, sb = a.strata[m].shape[-2], b.strata[m].shape[-2]
        if a.episodes[m] != b.episodes[m] or (sa != sb and 1 not in (sa, sb)):
            raise ValueError(
                f"tables: expected the same episodes and sampling seeds (or one sampling seed) in scenario "
                f"{m!r}, got {sa} and {sb} sampling seeds"
            )
        strata[m] = a.strata[m] - b.strata[m]  # (T, 1, E) broadcasts over the other's sampling seeds
    return ScoreTable(strata, a.training_seeds, a.episodes)


def design_variance(c: Components, t: int, s: int, episodes_per_scenario: int) -> tuple[float, float]:
    """(variance of the mean, Satterthwaite df) for a design of t training seeds, s sampling seeds and
    `episodes_per_scenario` episodes in each of the components' scenarios."""
    n = c.scenarios * episodes_per_scenario
    if t < 2:
        raise ValueError(f"training seeds: expected >= 2 to estimate the spread between them, got {t}")
    ms_t = c.residual + n * c.sampling + s * n * c.training
    ms_e = c.residual + t * s * c.episode
    ms_r = c.residual
    var = c.training / t + c.sampling / (t * s) + c.episode / n + c.residual / (t * s * n)
    terms = [(ms_t / (t * s * n), t - 1)]
    df_e, df_r = n - c.scenarios, (t * s - 1) * (n - 1)
    if df_e > 0:
        terms += [(ms_e / (t * s * n), df_e), (ms_r / (t * s * n), df_r)]
    denom = sum(v * v / d for v, d in terms if d > 0)
    df = var * var / denom if denom > 0 else math.inf
    return var, df


def power(delta: float, var: float, df: float, alpha: float = 0.05) -> float:
    """Power of the two-sided t-test of a mean difference when the true difference is `delta`."""
    if var <= 0:
        return 1.0 if delta != 0 else alpha
    crit = stats.t.ppf(1 - alpha / 2, df)
    ncp = abs(delta) / math.sqrt(var)
    p = float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    if not math.isfinite(p):  # far tails of the noncentral t: the normal approximation is exact enough
        p = float(stats.norm.sf(crit - ncp) + stats.norm.cdf(-crit - ncp))
    return min(1.0, p)


def detectable_difference(var: float, df: float, *, target: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest true difference detected with probability `target`."""
    if var <= 0:
        return 0.0
    sd = math.sqrt(var)
    hi = (stats.t.ppf(1 - alpha / 2, df) + 3.0) * sd
    while power(hi, var, df, alpha) < target:
        hi *= 2
    return float(optimize.brentq(lambda d: power(d, var, df, alpha) - target, 0.0, hi))


def difference_test(table: ScoreTable, *, alpha: float = 0.05, mde: bool = True) -> dict[str, float]:
    """The t-test of a paired-difference table's mean against 0, with the design's own variance:
    {'diff', 'se', 't', 'df', 'p', 'mde'} (mde: detectable difference at 80% power; NaN if not asked)."""
    y, _ = _stacked(table)
    t, s, n = y.shape
    nan = {
        "diff": float(y.mean()),
        "se": math.nan,
        "t": math.nan,
        "df": math.nan,
        "p": math.nan,
        "mde": math.nan,
    }
    if t < 2:
        return nan
    m = mean_squares(table)
    cells = t * s * n
    terms = [(m.ms_t / cells, m.df_t)]
    var = m.ms_t / cells
    if m.df_e > 0 and m.df_r > 0 and m.ms_e > m.ms_r:
        var += (m.ms_e - m.ms_r) / cells
        terms += [(m.ms_e / cells, m.df_e), (m.ms_r / cells, m.df_r)]
    if var <= 0:
        return {**nan, "se": 0.0}
    df = var * var / sum(v * v / d for v, d in terms)
    tt = float(y.mean() / math.sqrt(var))
    return {
        "diff": float(y.mean()),
        "se": math.sqrt(var),
        "t": tt,
        "df": float(df),
        "p": float(2 * stats.t.sf(abs(tt), df)),
        "mde": detectable_difference(var, df, alpha=alpha) if mde else math.nan,
    }
