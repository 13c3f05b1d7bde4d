"""Study statistics against hand-computed values and a reference computation."""

import math

import numpy as np
import pytest

from studies.stats import (
    bootstrap_mean_ci,
    cluster_bootstrap_mean_ci,
    compare,
    describe,
    regularized_incomplete_beta,
    seed_spread,
    student_t_two_sided_p,
    welch_t_test,
)


def test_describe_by_hand():
    d = describe([80.0, 90.0, 85.0, 95.0], higher_is_better=True)
    assert d["n"] == 4 and d["mean"] == 87.5 and d["median"] == 87.5
    # Sample variance: (56.25 + 6.25 + 6.25 + 56.25) / 3 = 41.667
    assert math.isclose(d["std"], math.sqrt(125 / 3))
    assert d["min"] == 80.0 and d["max"] == 95.0 and d["best"] == 95.0
    assert describe([0.3, 0.2, 0.5], higher_is_better=False)["best"] == 0.2
    assert math.isnan(describe([1.0])["std"])


def test_bootstrap_ci_matches_a_reference_loop():
    values = np.array([85.1, 88.7, 83.2, 86.0, 87.5, 84.4])
    low, high = bootstrap_mean_ci(values, n_boot=2000, ci=0.9, seed=3)
    # Reference: the same resampling written as an explicit loop with the same generator stream.
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 6, size=(2000, 6))
    means = [values[row].mean() for row in idx]
    assert math.isclose(low, float(np.quantile(means, 0.05)))
    assert math.isclose(high, float(np.quantile(means, 0.95)))
    assert low < values.mean() < high
    assert bootstrap_mean_ci(values, n_boot=2000, seed=3) == bootstrap_mean_ci(values, n_boot=2000, seed=3)
    assert bootstrap_mean_ci(values, n_boot=2000, seed=3) != bootstrap_mean_ci(values, n_boot=2000, seed=4)


def test_incomplete_beta_known_values():
    assert math.isclose(regularized_incomplete_beta(0.5, 1.0, 1.0), 0.5, rel_tol=1e-12)
    assert math.isclose(regularized_incomplete_beta(0.3, 2.0, 1.0), 0.09, rel_tol=1e-12)  # x^2
    assert math.isclose(regularized_incomplete_beta(0.3, 1.0, 3.0), 1 - 0.7**3, rel_tol=1e-12)
    assert math.isclose(regularized_incomplete_beta(0.5, 2.5, 2.5), 0.5, rel_tol=1e-12)  # symmetry


def test_student_t_p_values_from_tables():
    # Two-sided 5% critical values: df=10 -> 2.228139, df=4 -> 2.776445; df=1 (Cauchy): P(|T|>1) = 0.5.
    assert math.isclose(student_t_two_sided_p(2.228139, 10), 0.05, rel_tol=1e-5)
    assert math.isclose(student_t_two_sided_p(-2.776445, 4), 0.05, rel_tol=1e-5)
    assert math.isclose(student_t_two_sided_p(1.0, 1), 0.5, rel_tol=1e-10)
    assert student_t_two_sided_p(0.0, 7) == 1.0


def test_welch_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0]
    # mean a 2.5, var a 5/3, n 4 ; mean b 4, var b 4, n 3
    va, vb = (5 / 3) / 4, 4 / 3
    t = (2.5 - 4) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 2)
    out = welch_t_test(a, b)
    assert math.isclose(out["t"], t) and math.isclose(out["df"], df)
    assert math.isclose(out["p"], student_t_two_sided_p(t, df))
    assert 0.2 < out["p"] < 0.4
    assert math.isnan(welch_t_test([1.0], [2.0, 3.0])["p"])


def test_compare_difference_ci_and_test():
    a = [88.0, 86.0, 90.0, 87.0]
    b = [85.0, 84.0, 86.0, 85.5]
    out = compare(a, b, n_boot=4000, seed=0)
    assert math.isclose(out["diff"], np.mean(a) - np.mean(b))
    assert out["ci_low"] < out["diff"] < out["ci_high"] and out["ci_low"] > 0
    assert out["welch_p"] < 0.05


def test_seed_spread_separates_training_and_sampling():
    # Two training seeds x three sampling seeds; a deterministic head has no within-seed spread.
    det = seed_spread([80, 80, 80, 90, 90, 90], [0, 0, 0, 1, 1, 1])
    assert math.isclose(det["between_training_std"], math.sqrt(50)) and det["within_training_std"] == 0.0
    sto = seed_spread([79, 80, 81, 89, 90, 91], [0, 0, 0, 1, 1, 1])
    assert math.isclose(sto["within_training_std"], 1.0)
    with pytest.raises(ValueError, match="training_seeds: expected one seed per value"):
        seed_spread([1.0, 2.0], [0])


def test_bad_values():
    with pytest.raises(ValueError, match="values: expected finite values, got 1 NaN/Inf"):
        describe([1.0, float("nan")])


def test_cluster_bootstrap_matches_a_reference_loop_and_is_wider_for_correlated_runs():
    # Three training seeds, two runs each; runs of one seed are nearly equal (one trained model).
    values = np.array([80.0, 80.5, 90.0, 89.5, 70.0, 70.4])
    seeds = np.array([0, 0, 1, 1, 2, 2])
    low, high = cluster_bootstrap_mean_ci(values, seeds, n_boot=3000, ci=0.9, seed=5)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 3, size=(3000, 3))
    groups = [values[seeds == k] for k in (0, 1, 2)]
    means = [np.concatenate([groups[i] for i in row]).mean() for row in idx]
    assert math.isclose(low, float(np.quantile(means, 0.05))) and math.isclose(
        high, float(np.quantile(means, 0.95))
    )
    iid_low, iid_high = bootstrap_mean_ci(values, n_boot=3000, ci=0.9, seed=5)
    assert high - low > iid_high - iid_low  # treating the six runs as independent understates the spread
    with pytest.raises(ValueError, match="clusters: expected one cluster label per value"):
        cluster_bootstrap_mean_ci(values, seeds[:3])


def test_compare_with_clusters_tests_the_seed_means():
    a, ca = [88.0, 88.2, 86.0, 86.1, 90.0, 90.3], [0, 0, 1, 1, 2, 2]
    b, cb = [85.0, 85.0, 84.0, 84.0, 86.0, 86.0], [0, 0, 1, 1, 2, 2]
    out = compare(a, b, n_boot=2000, seed=0, clusters_a=ca, clusters_b=cb)
    seed_means_a = [88.1, 86.05, 90.15]
    seed_means_b = [85.0, 84.0, 86.0]
    ref = welch_t_test(seed_means_a, seed_means_b)
    assert math.isclose(out["welch_t"], ref["t"]) and math.isclose(out["welch_p"], ref["p"])
    assert out["welch_p"] > compare(a, b, n_boot=2000, seed=0)["welch_p"]  # fewer independent units
