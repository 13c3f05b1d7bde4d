"""Classical study statistics against quoted reference values, hand calculations and scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from studies.stats import (
    bootstrap_mean_ci,
    cluster_bootstrap_mean_ci,
    compare,
    describe,
    seed_spread,
    t_quantile,
    welch_t_test,
)

# R's `t.test(extra ~ group, data = sleep)` (Welch, the R default), quoted from R's output:
#   t = -1.8608, df = 17.776, p-value = 0.07939
#   95 percent confidence interval: -3.3654832  0.2054832
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_welch_matches_r_on_the_sleep_data():
    out = welch_t_test(SLEEP_1, SLEEP_2)
    assert out["t"] == pytest.approx(-1.8608, abs=1e-4)
    assert out["df"] == pytest.approx(17.776, abs=1e-3)
    assert out["p"] == pytest.approx(0.07939, abs=1e-5)
    assert out["ci_low"] == pytest.approx(-3.3654832, abs=1e-6)
    assert out["ci_high"] == pytest.approx(0.2054832, abs=1e-6)


def test_welch_by_hand_and_scipy():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    va, vb = (5 / 3) / 4, 4 / 3  # var(a)/n_a, var(b)/n_b
    t = (2.5 - 4) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    out = welch_t_test(a, b)
    assert math.isclose(out["t"], t) and math.isclose(out["df"], df)
    assert math.isclose(out["p"], 2 * stats.t.sf(abs(t), df))
    assert math.isnan(welch_t_test([1.0], [2.0, 3.0])["p"])
    assert welch_t_test([1.0, 1.0], [2.0, 2.0])["p"] == 0.0  # no spread, different means


def test_t_quantiles_from_tables():
    assert t_quantile(0.975, 10) == pytest.approx(2.228139, abs=1e-6)
    assert t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    with pytest.raises(ValueError, match="df: expected > 0, got 0"):
        t_quantile(0.5, 0)


def test_describe_by_hand():
    d = describe([80.0, 90.0, 85.0, 95.0], higher_is_better=True)
    assert d["n"] == 4 and d["mean"] == 87.5 and d["median"] == 87.5
    assert math.isclose(d["std"], math.sqrt(125 / 3))  # (56.25 + 6.25 + 6.25 + 56.25) / 3
    assert d["min"] == 80.0 and d["max"] == 95.0 and d["best"] == 95.0
    assert describe([0.3, 0.2, 0.5], higher_is_better=False)["best"] == 0.2
    assert math.isnan(describe([1.0])["std"])


def test_bootstrap_ci_is_scipys_percentile_bootstrap():
    values = np.array([85.1, 88.7, 83.2, 86.0, 87.5, 84.4])
    low, high = bootstrap_mean_ci(values, n_boot=2000, ci=0.9, seed=3)
    ref = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=2000,
        confidence_level=0.9,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert low == pytest.approx(ref.low) and high == pytest.approx(ref.high)
    assert low < values.mean() < high
    assert bootstrap_mean_ci(values, n_boot=2000, seed=3) == bootstrap_mean_ci(values, n_boot=2000, seed=3)
    assert bootstrap_mean_ci(values, n_boot=2000, seed=3) != bootstrap_mean_ci(values, n_boot=2000, seed=4)


def test_cluster_bootstrap_draws_whole_clusters_and_is_wider_for_correlated_runs():
    # Three training seeds, two runs each; runs of one seed are nearly equal (one trained model).
    values = np.array([80.0, 80.5, 90.0, 89.5, 70.0, 70.4])
    seeds = np.array([0, 0, 1, 1, 2, 2])
    low, high = cluster_bootstrap_mean_ci(values, seeds, n_boot=3000, ci=0.9, seed=5)
    # Whole clusters: the bounds are means of three drawn cluster means (a multiset of {80.25, 89.75, 70.2}).
    cluster_means = [80.25, 89.75, 70.2]
    possible = {round(sum(c) / 3, 9) for c in np.array(np.meshgrid(*[cluster_means] * 3)).reshape(3, -1).T}
    assert any(abs(low - p) < 1e-6 for p in possible) and any(abs(high - p) < 1e-6 for p in possible)
    iid_low, iid_high = bootstrap_mean_ci(values, n_boot=3000, ci=0.9, seed=5)
    assert high - low > iid_high - iid_low  # treating the six runs as independent understates the spread
    with pytest.raises(ValueError, match="clusters: expected one cluster label per value"):
        cluster_bootstrap_mean_ci(values, seeds[:3])


def test_compare_difference_ci_and_test():
    a = [88.0, 86.0, 90.0, 87.0]
    b = [85.0, 84.0, 86.0, 85.5]
    out = compare(a, b, n_boot=4000, seed=0)
    assert math.isclose(out["diff"], np.mean(a) - np.mean(b))
    assert out["ci_low"] < out["diff"] < out["ci_high"] and out["ci_low"] > 0
    assert out["welch_p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)


def test_compare_with_clusters_tests_the_seed_means():
    a, ca = [88.0, 88.2, 86.0, 86.1, 90.0, 90.3], [0, 0, 1, 1, 2, 2]
    b, cb = [85.0, 85.0, 84.0, 84.0, 86.0, 86.0], [0, 0, 1, 1, 2, 2]
    out = compare(a, b, n_boot=2000, seed=0, clusters_a=ca, clusters_b=cb)
    ref = welch_t_test([88.1, 86.05, 90.15], [85.0, 84.0, 86.0])
    assert math.isclose(out["welch_t"], ref["t"]) and math.isclose(out["welch_p"], ref["p"])
    assert out["welch_p"] > compare(a, b, n_boot=2000, seed=0)["welch_p"]  # fewer independent units


def test_seed_spread_separates_training_and_sampling():
    det = seed_spread([80, 80, 80, 90, 90, 90], [0, 0, 0, 1, 1, 1])
    assert math.isclose(det["between_training_std"], math.sqrt(50)) and det["within_training_std"] == 0.0
    sto = seed_spread([79, 80, 81, 89, 90, 91], [0, 0, 0, 1, 1, 1])
    assert math.isclose(sto["within_training_std"], 1.0)
    with pytest.raises(ValueError, match="training_seeds: expected one seed per value"):
        seed_spread([1.0, 2.0], [0])


def test_bad_values():
    with pytest.raises(ValueError, match="values: expected finite values, got 1 NaN/Inf"):
        describe([1.0, float("nan")])


def test_cluster_bootstrap_with_clusters_of_unequal_size_weights_runs_equally():
    values = np.array([10.0, 20.0, 30.0, 90.0])
    seeds = np.array([0, 0, 0, 1])  # one cluster of three runs, one of one
    low, high = cluster_bootstrap_mean_ci(values, seeds, n_boot=2000, ci=0.99, seed=0)
    # Possible replicate means: {20} (cluster 0 twice), {90} (cluster 1 twice), 37.5 (both: 150 / 4 runs).
    assert low == pytest.approx(20.0) and high == pytest.approx(90.0)
    assert describe(values, clusters=seeds, n_boot=2000)["mean"] == pytest.approx(37.5)
