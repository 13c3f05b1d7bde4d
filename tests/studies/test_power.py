"""Variance components and power: estimators recover planted components, the power formula matches
simulated rejection rates, and a plan made from a simulated pilot detects the planted effect."""

import math

import numpy as np
import pytest

from studies.plan import plan_designs
from studies.power import (
    Components,
    components,
    design_variance,
    detectable_difference,
    difference_table,
    difference_test,
    power,
)
from studies.resampling import ScoreTable

# Planted standard deviations of one head's episode scores and of the head difference.
HEAD_SD = {"training": 6.0, "sampling": 3.0, "episode": 15.0, "residual": 10.0}


def _heads(rng, t, s, e, scenarios=2, delta=0.0):
    """Two heads on the same training seeds and episodes. B: mu_m + a_t + b_ts + c_me + r; A adds delta
    and its own (smaller) training, sampling and head-by-episode terms, sharing c_me with B."""
    arr_a, arr_b = {}, {}
    a_t = rng.normal(0, HEAD_SD["training"], size=(t, 1, 1))
    a_t2 = a_t + rng.normal(0, 4.0, size=(t, 1, 1))  # A's AE is B's AE: training effects correlate
    b_b = rng.normal(0, HEAD_SD["sampling"], (t, s, 1))  # a run's effect holds in every scenario
    b_a = rng.normal(0, HEAD_SD["sampling"], (t, s, 1))
    for m in range(scenarios):
        c = rng.normal(0, HEAD_SD["episode"], size=(1, 1, e)) + 10 * m
        arr_b[f"m{m}"] = 50 + a_t + b_b + c + rng.normal(0, HEAD_SD["residual"], (t, s, e))
        arr_a[f"m{m}"] = (
            50
            + delta
            + a_t2
            + b_a
            + c
            + rng.normal(0, 5.0, (1, 1, e))
            + rng.normal(0, HEAD_SD["residual"], (t, s, e))
        )
    seeds = tuple(range(t))
    eps = {k: tuple(range(e)) for k in arr_a}
    return ScoreTable(arr_a, seeds, eps), ScoreTable(arr_b, seeds, eps)


# The difference A - B has: training sd 4, sampling sd sqrt(3^2 + 3^2), episode sd 5, residual sd sqrt(2) * 10.
DIFF = Components(16.0, 18.0, 25.0, 200.0, scenarios=2)


def test_components_recover_the_planted_ones():
    a, b = _heads(np.random.default_rng(0), t=60, s=4, e=60)
    head = components(b)
    for k, sd in HEAD_SD.items():
        assert math.sqrt(getattr(head, k)) == pytest.approx(sd, rel=0.25), k
    diff = components(difference_table(a, b))
    for k in ("training", "sampling", "episode", "residual"):
        assert getattr(diff, k) == pytest.approx(getattr(DIFF, k), rel=0.35), k


def test_deterministic_head_has_no_sampling_variance_and_one_seed_is_not_identified():
    rng = np.random.default_rng(1)
    y = rng.normal(50, 10, size=(3, 1, 8)).repeat(2, axis=1)  # both sampling seeds give the same runs
    c = components(ScoreTable({"m": y}, (0, 1, 2), {"m": tuple(range(8))}))
    assert c.sampling == 0.0 and "sampling" in c.identified
    one = components(ScoreTable({"m": y[:1, :1]}, (0,), {"m": tuple(range(8))}))
    assert "training" not in one.identified and "sampling" not in one.identified


def test_design_variance_formula_and_detectable_difference():
    var, df = design_variance(DIFF, t=5, s=2, episodes_per_scenario=10)
    n = 2 * 10
    assert var == pytest.approx(16 / 5 + 18 / 10 + 25 / n + 200 / (5 * 2 * n))
    assert 4 <= df < 200
    mde = detectable_difference(var, df)
    assert power(mde, var, df) == pytest.approx(0.8, abs=1e-6)
    # Large df: the normal-theory (1.96 + 0.84) standard errors.
    assert detectable_difference(1.0, 1e6) == pytest.approx(1.959964 + 0.841621, abs=1e-3)
    with pytest.raises(ValueError, match="training seeds: expected >= 2"):
        design_variance(DIFF, t=1, s=2, episodes_per_scenario=10)


def test_power_matches_simulated_rejection_rates():
    rng = np.random.default_rng(2)
    t, s, e, delta, sims = 4, 2, 6, 9.0, 300
    predicted = power(delta, *design_variance(DIFF, t, s, e))
    hits = nulls = 0
    for _ in range(sims):
        a, b = _heads(rng, t, s, e, delta=delta)
        hits += difference_test(difference_table(a, b), mde=False)["p"] < 0.05
        a0, b0 = _heads(rng, t, s, e, delta=0.0)
        nulls += difference_test(difference_table(a0, b0), mde=False)["p"] < 0.05
    assert hits / sims == pytest.approx(predicted, abs=0.09), (hits / sims, predicted)
    assert nulls / sims < 0.1


def test_a_plan_from_a_simulated_pilot_detects_the_planted_effect():
    rng = np.random.default_rng(3)
    delta = 4.0
    pilot_a, pilot_b = _heads(rng, t=6, s=2, e=10, delta=delta)
    comps = {"a_vs_b": components(difference_table(pilot_a, pilot_b))}
    designs = plan_designs(comps, None, detect=delta, target=0.8)
    assert designs, "no design found"
    best = min(designs, key=lambda r: r["training_seeds"] * r["sampling_seeds"] * r["episodes_per_scenario"])
    t, s, e = best["training_seeds"], best["sampling_seeds"], best["episodes_per_scenario"]
    sims, hits, estimates = 200, 0, []
    for _ in range(sims):
        a, b = _heads(rng, t, s, e, delta=delta)
        test = difference_test(difference_table(a, b), mde=False)
        hits += test["p"] < 0.05
        estimates.append(test["diff"])
    assert hits / sims >= 0.68, (hits / sims, best)  # planned for 0.8 from a noisy 6-seed pilot
    assert np.mean(estimates) == pytest.approx(delta, abs=0.5)
    # The study's own detectable difference is what the plan aims below: a smaller design cannot reach it.
    own = difference_test(difference_table(pilot_a, pilot_b))
    assert own["diff"] == pytest.approx(float(np.mean(difference_table(pilot_a, pilot_b).pooled())))
    assert own["mde"] > 0


def test_a_deterministic_heads_single_run_is_paired_with_every_sampling_seed():
    """A head run once per training seed (S = 1) against one run under two sampling seeds (S = 2):
    each of the two is paired with the single run of its training seed, episode by episode."""
    eps = {"a": (10, 11)}
    two = ScoreTable({"a": np.array([[[5.0, 6.0], [7.0, 8.0]], [[1.0, 2.0], [3.0, 4.0]]])}, (0, 1), eps)
    one = ScoreTable({"a": np.array([[[1.0, 1.0]], [[0.0, 2.0]]])}, (0, 1), eps)
    diff = difference_table(two, one)
    assert diff.shape == (2, 2)
    np.testing.assert_array_equal(diff.strata["a"], [[[4, 5], [6, 7]], [[1, 0], [3, 2]]])
    three = ScoreTable({"a": np.zeros((2, 3, 2))}, (0, 1), eps)
    with pytest.raises(ValueError, match="got 2 and 3 sampling seeds"):
        difference_table(two, three)


def test_the_cost_model_runs_a_deterministic_head_once_per_training_seed():
    from studies.plan import CostModel

    kw = dict(
        fixed_s=10.0,
        ae_s=5.0,
        refine_s={"diffusion": 7.0},
        open_loop_s={"mlp": 1.0, "diffusion": 2.0},
        episode_s={"mlp": 0.5, "diffusion": 1.0, "constant_velocity": 0.25},
        scenarios=2,
    )
    # Runs: mlp 1 + 2 x 4 x 0.5 = 5 s, diffusion 2 + 2 x 4 x 1 = 10 s, the baseline 2 x 4 x 0.25 = 2 s.
    # 10 fixed + 3 x (5 + 7) training + 3 x (1 x 5 + 2 x 10) runs + 2 = 123 s on one worker.
    assert CostModel(**kw, deterministic=("mlp",)).wall_s(3, 2, 4, workers=1) == pytest.approx(123.0)
    assert CostModel(**kw).wall_s(3, 2, 4, workers=1) == pytest.approx(138.0)
