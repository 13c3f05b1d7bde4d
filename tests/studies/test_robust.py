"""IQM, probability of improvement and performance profiles against hand-computed values (the
definitions of Agarwal et al. 2021), and the hierarchical bootstrap: reproducible, paired where the
design is paired, and covering the true mean at about the nominal rate."""

import numpy as np
import pytest
from scipy import stats

from studies.resampling import ScoreTable, hierarchical_bootstrap, score_table
from studies.robust import (
    improvement_probability,
    iqm,
    performance_profile,
    probability_of_improvement,
    robust_summary,
)


def _table(arrays: dict, seeds=None) -> ScoreTable:
    arrays = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
    t = next(iter(arrays.values())).shape[0]
    return ScoreTable(
        arrays, tuple(seeds or range(t)), {k: tuple(range(v.shape[-1])) for k, v in arrays.items()}
    )


def test_iqm_by_hand():
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # drop 1, 2 and 7, 8: mean(3, 4, 5, 6)
    assert iqm(np.array([10.0, 1, 7, 3, 100, 5])) == pytest.approx(
        6.25
    )  # int(1.5) = 1 cut: mean(3, 5, 7, 10)
    assert iqm(np.array([1.0, 2, 3, 4, 5, 6, 7, 8, np.nan])) == pytest.approx(4.5)  # NaN = missing
    rows = np.array([[1.0, 2, 3, 4], [4.0, 4, 0, 100]])
    assert iqm(rows).tolist() == pytest.approx([2.5, 4.0])


def test_probability_of_improvement_by_hand():
    x, y = np.array([3.0, 5.0]), np.array([1.0, 3.0, 4.0])
    # pairs x > y: (3,1), (5,1), (5,3), (5,4) = 4; ties (3,3) = 1/2; out of 6
    assert improvement_probability(x, y) == pytest.approx(4.5 / 6)
    assert improvement_probability(x, y) == pytest.approx(stats.mannwhitneyu(x, y).statistic / 6)
    assert improvement_probability(y, x) == pytest.approx(1 - 4.5 / 6)
    # Two scenarios (the paper's tasks), runs' per-scenario means: highway x (2 runs) vs y (1 run).
    a = _table({"highway": [[[100.0, 80.0]], [[40.0, 40.0]]], "merge": [[[50.0]], [[70.0]]]})
    b = _table({"highway": [[[60.0, 60.0]]], "merge": [[[70.0]]]}, seeds=[9])
    # highway: run means 90, 40 vs 60 -> 1/2; merge: 50, 70 vs 70 -> (0 + 1/2)/2 = 1/4
    assert probability_of_improvement(a, b) == pytest.approx((0.5 + 0.25) / 2)


def test_performance_profile_by_hand():
    table = _table({"highway": [[[0.0, 50.0, 100.0, 100.0]]], "merge": [[[20.0, 60.0, 60.0, 100.0]]]})
    taus = np.array([0.0, 50.0, 60.0, 100.0])
    # highway: [1, 3/4, 1/2, 1/2]; merge: [1, 3/4, 3/4, 1/4]; averaged over scenarios
    assert performance_profile(table, taus).tolist() == pytest.approx([1.0, 0.75, 0.625, 0.375])


def test_score_table_from_run_records_and_missing_runs():
    scores = {(0, 0, "highway", 7): 10.0, (0, 0, "highway", 8): 20.0, (1, 0, "highway", 7): 30.0}
    t = score_table(scores, training_seeds=[0, 1], sampling_seeds=[0])
    assert t.strata["highway"].shape == (2, 1, 2) and t.episodes["highway"] == (7, 8)
    assert np.isnan(t.strata["highway"][1, 0, 1])
    assert t.run_scores().tolist() == pytest.approx([15.0, 30.0])


def test_bootstrap_is_reproducible_and_draws_training_seeds_whole():
    rng = np.random.default_rng(0)
    # Three training seeds at 0, 10, 20 with no other spread: replicate means are means of 3 drawn seeds.
    base = np.array([0.0, 10.0, 20.0])[:, None, None] + np.zeros((3, 2, 5))
    table = _table({"highway": base})
    res = hierarchical_bootstrap([table], lambda t: np.nanmean(t[0].pooled(), axis=-1), n_boot=500, seed=1)
    assert np.allclose(res.distribution * 3 / 10, np.round(res.distribution * 3 / 10))
    again = hierarchical_bootstrap([table], lambda t: np.nanmean(t[0].pooled(), axis=-1), n_boot=500, seed=1)
    assert np.array_equal(res.distribution, again.distribution)
    other = _table({"highway": rng.normal(size=(3, 2, 5))})
    r1 = hierarchical_bootstrap([other], lambda t: np.nanmean(t[0].pooled(), axis=-1), n_boot=300, seed=1)
    r2 = hierarchical_bootstrap([other], lambda t: np.nanmean(t[0].pooled(), axis=-1), n_boot=300, seed=2)
    assert not np.array_equal(r1.distribution, r2.distribution)


def test_paired_heads_share_the_draw_of_seeds_and_episodes():
    rng = np.random.default_rng(1)
    a = rng.normal(50, 10, size=(4, 2, 6))
    ta, tb = _table({"highway": a}), _table({"highway": a - 5.0})  # B = A - 5 run by run, episode by episode

    def diff(t):
        return np.nanmean(t[0].pooled(), axis=-1) - np.nanmean(t[1].pooled(), axis=-1)

    paired = hierarchical_bootstrap([ta, tb], diff, n_boot=400, seed=0)
    assert float(paired.low) == pytest.approx(5.0) and float(paired.high) == pytest.approx(5.0)
    unpaired = hierarchical_bootstrap([ta, tb], diff, n_boot=400, seed=0, pair_seeds=False)
    assert float(unpaired.high - unpaired.low) > 1.0


def _simulate(rng, t=6, s=2, scenarios=2, e=8, sd=(4.0, 2.0, 12.0, 8.0), mu=60.0):
    """y = mu + a_t + b_ts + c_me + r_tsme: training, sampling, episode (shared by runs), residual."""
    a = rng.normal(0, sd[0], size=(t, 1, 1))
    b = rng.normal(0, sd[1], size=(t, s, 1))
    return _table(
        {
            f"m{m}": mu + a + b + rng.normal(0, sd[2], size=(1, 1, e)) + rng.normal(0, sd[3], size=(t, s, e))
            for m in range(scenarios)
        }
    )


def test_hierarchical_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    covered, naive_covered, sims = 0, 0, 150

    def mean(t):
        return np.nanmean(t[0].pooled(), axis=-1)

    for i in range(sims):
        table = _simulate(rng)
        res = hierarchical_bootstrap([table], mean, n_boot=400, ci=0.9, seed=i)
        covered += res.low <= 60.0 <= res.high
        flat = table.pooled()
        naive = stats.bootstrap(
            (flat,),
            np.mean,
            n_resamples=400,
            confidence_level=0.9,
            method="percentile",
            rng=np.random.default_rng(i),
        ).confidence_interval
        naive_covered += naive.low <= 60.0 <= naive.high
    rate, naive_rate = covered / sims, naive_covered / sims
    assert 0.8 <= rate <= 0.98, rate  # nominal 0.9
    assert naive_rate < rate - 0.15, (naive_rate, rate)  # episodes as independent draws: far too narrow


def test_robust_summary_estimates_equal_the_direct_computation():
    rng = np.random.default_rng(3)
    tables = {"a": _simulate(rng, t=3, s=2, e=4), "b": _simulate(rng, t=3, s=2, e=4, mu=40.0)}
    out = robust_summary(tables, n_boot=300, seed=0)
    assert out["iqm"]["a"]["estimate"] == pytest.approx(stats.trim_mean(tables["a"].pooled(), 0.25))
    assert out["mean"]["b"]["estimate"] == pytest.approx(tables["b"].pooled().mean())
    poi = out["probability_of_improvement"]["a > b"]
    assert poi["estimate"] == pytest.approx(float(probability_of_improvement(tables["a"], tables["b"])))
    assert poi["ci_low"] <= poi["estimate"] <= poi["ci_high"] and poi["estimate"] > 0.8
    for key in ("a", "b"):
        p = out["profile"][key]
        assert p["fraction"][0] == 1.0 and all(lo <= f + 1e-12 for lo, f in zip(p["low"], p["fraction"]))
    assert robust_summary(tables, n_boot=300, seed=0) == out
