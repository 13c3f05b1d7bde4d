"""Fast-slow runtime: k=1 equals the synchronous path, refresh counts, double buffer, failures, Policy."""

from __future__ import annotations

import logging
import math
import threading

import numpy as np
import pytest
import torch

from automot.types import EpisodeInfo, Policy, PolicyOutput, SensorBatch
from mot import (
    FastSlowConfig,
    FastSlowPlanner,
    MoTBackbone,
    StaleCacheError,
    build_action_expert,
    preset_config,
)
from tests.mot._support import CountingUE, FakeUE, cache_generation_values, make_observation


class SpyBackbone(MoTBackbone):
    """Records every cache the fast path was given."""

    def __init__(self, ue, ae) -> None:
        super().__init__(ue, ae)
        self.used = []

    def act(self, batch, cache, *, generator=None):
        self.used.append(cache)
        return super().act(batch, cache, generator=generator)


@pytest.fixture(scope="module")
def fake_ae(tiny_backbone):
    return build_action_expert(preset_config("tiny"), tiny_backbone.ue.geometry, seed=1).eval()


def test_k1_sync_equals_the_synchronous_path_exactly(tiny_backbone):
    planner = FastSlowPlanner(tiny_backbone, refresh_every=1, mode="sync")
    for i in range(3):
        obs = make_observation(i)
        step = planner.step(obs)
        with torch.no_grad():
            ref = tiny_backbone(SensorBatch.from_observations([obs]))
        assert torch.equal(step.output.latents, ref.latents)
        assert torch.equal(step.output.longitudinal_logits, ref.longitudinal_logits)
        assert np.array_equal(step.waypoints, ref.plan.waypoints[0].numpy())
        assert np.array_equal(step.route, ref.plan.route[0].numpy())
        assert step.cache_age_steps == 0 and step.ue_refreshed


@pytest.mark.parametrize("mode", ["sync", "background"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_ue_runs_ceil_n_over_k_times(tiny_backbone, mode, k):
    counting = CountingUE(tiny_backbone.ue)
    n = 7
    with FastSlowPlanner(MoTBackbone(counting, tiny_backbone.ae), refresh_every=k, mode=mode) as planner:
        ages = []
        for i in range(n):
            ages.append(planner.step(make_observation(i, dt=0.5)).cache_age_steps)
            planner.wait_idle(30)  # background: let each refresh finish, so the count is deterministic
        assert len(counting.steps) == math.ceil(n / k) == planner.ue_calls
        assert counting.steps == list(range(0, n, k))
        if mode == "sync":
            assert ages == [i % k for i in range(n)]
        else:  # the refresh started at step i is published during step i or later
            assert all(0 <= a <= i for i, a in enumerate(ages))


def test_background_never_waits_and_never_exposes_a_mixed_cache(tiny_backbone, fake_ae):
    gate = threading.Event()
    gate.set()
    fake = FakeUE(tiny_backbone.ue.geometry, gate=gate)
    bb = SpyBackbone(fake, fake_ae)
    with FastSlowPlanner(bb, refresh_every=1, mode="background", max_cache_age=50) as planner:
        assert planner.step(make_observation(0)).cache_generation == 1  # the first cache is waited for
        assert planner.wait_idle(30)

        # Hold the worker in the middle of writing generation 2: the fast loop must keep going on 1.
        gate.clear()
        fake.in_build.clear()
        planner.step(make_observation(1))
        assert fake.in_build.wait(30)
        for i in range(2, 7):
            s = planner.step(make_observation(i))
            assert (s.cache_generation, s.cache_step, s.cache_age_steps) == (1, 0, i)
        gate.set()
        assert planner.wait_idle(30)
        s = planner.step(make_observation(7))
        assert s.cache_generation >= 3 and s.cache_step >= 6 and s.ue_refreshed  # newest request won

        # Stress: many steps with the worker refreshing concurrently.
        for i in range(8, 60):
            planner.step(make_observation(i % 5))
    gens = []
    for cache in bb.used:
        values = cache_generation_values(cache)
        assert values == {float(cache.generation)}, values  # one generation per cache, never mixed
        gens.append(cache.generation)
    assert gens == sorted(gens) and gens[-1] > 3


@pytest.mark.parametrize("mode", ["sync", "background"])
def test_ue_failure_is_surfaced_then_stale_cache_raises(tiny_backbone, fake_ae, mode, caplog):
    fake = FakeUE(tiny_backbone.ue.geometry, fail_on=range(2, 100))
    with FastSlowPlanner(MoTBackbone(fake, fake_ae), refresh_every=1, mode=mode, max_cache_age=3) as planner:
        with caplog.at_level(logging.ERROR, logger="mot.runtime"):
            assert planner.step(make_observation(0)).ue_error is None
            planner.wait_idle(30)
            for i in range(1, 4):
                s = planner.step(make_observation(i))
                planner.wait_idle(30)
                assert s.cache_generation == 1 and s.cache_age_steps == i
                if mode == "sync":
                    assert "fake UE failure" in s.ue_error
            assert planner.ue_failures >= 3 and "fake UE failure" in repr(planner.last_error)
            with pytest.raises(StaleCacheError, match="4 steps old"):
                planner.step(make_observation(4))
        assert "refresh failed" in caplog.text


@pytest.mark.parametrize("mode", ["sync", "background"])
def test_first_refresh_failure_raises_clearly(tiny_backbone, fake_ae, mode):
    fake = FakeUE(tiny_backbone.ue.geometry, fail_on={1})
    with (
        FastSlowPlanner(MoTBackbone(fake, fake_ae), mode=mode) as planner,
        pytest.raises(StaleCacheError, match="no UE cache"),
    ):
        planner.step(make_observation(0))


@pytest.mark.parametrize("failure", ["raise", "nan"])
def test_recovery_after_a_failure(tiny_backbone, fake_ae, failure):
    kind = {"fail_on": {2}} if failure == "raise" else {"nan_on": {2}}
    fake = FakeUE(tiny_backbone.ue.geometry, **kind)
    planner = FastSlowPlanner(MoTBackbone(fake, fake_ae), refresh_every=1, mode="sync", max_cache_age=2)
    steps = [planner.step(make_observation(i)) for i in range(3)]
    assert [s.cache_age_steps for s in steps] == [0, 1, 0]
    assert steps[1].ue_error is not None and steps[2].ue_error is None
    assert ("NaN" in steps[1].ue_error) == (failure == "nan")
    assert planner.ue_failures == 1


def test_policy_protocol_and_reset(tiny_backbone):
    counting = CountingUE(tiny_backbone.ue)
    planner = FastSlowPlanner(MoTBackbone(counting, tiny_backbone.ae), refresh_every=2)
    assert isinstance(planner, Policy)
    planner.reset(EpisodeInfo(scenario="highway", seed=3))
    outs = [planner.plan(make_observation(i)) for i in range(3)]
    assert all(isinstance(o, PolicyOutput) for o in outs)
    assert outs[0].waypoints.shape == (6, 2) and outs[0].route.shape == (20, 2)
    assert [o.info["cache_age_steps"] for o in outs] == [0, 1, 0]
    planner.reset(EpisodeInfo(scenario="highway", seed=4))
    again = planner.plan(make_observation(0))
    assert counting.steps == [0, 2, 0] and again.info["cache_age_steps"] == 0
    np.testing.assert_array_equal(again.waypoints, outs[0].waypoints)


def test_sampling_head_uses_the_planner_generator(tiny_backbone):
    config = preset_config("tiny", {"head": "mot_test_noisy"})
    ae = build_action_expert(config, tiny_backbone.ue.geometry, seed=0)
    bb = MoTBackbone(tiny_backbone.ue, ae)

    def run(seed, episode_seed):
        planner = FastSlowPlanner(bb, seed=seed)
        planner.reset(EpisodeInfo(scenario="s", seed=episode_seed))
        return np.stack([planner.step(make_observation(i)).waypoints for i in range(3)])

    a = run(0, 5)
    np.testing.assert_array_equal(a, run(0, 5))
    assert np.abs(a - run(1, 5)).max() > 1e-3
    assert np.abs(a - run(0, 6)).max() > 1e-3


def test_config_validation():
    with pytest.raises(ValueError, match="refresh_every"):
        FastSlowConfig(refresh_every=0)
    with pytest.raises(ValueError, match="mode"):
        FastSlowConfig(mode="async")
    with pytest.raises(ValueError, match="max_cache_age"):
        FastSlowConfig(refresh_every=4, max_cache_age=2)
    with pytest.raises(ValueError, match="executor"):
        FastSlowConfig(mode="background", executor="fiber")
    with pytest.raises(ValueError, match="ue_threads"):
        FastSlowConfig(ue_threads=0)
    assert FastSlowConfig(refresh_every=4).max_cache_age == 16  # default: max(8, 4k)


def test_max_cache_age_below_a_healthy_background_run_is_rejected():
    """Background k=3 reaches age 3 with no UE error (the refresh of step 3 lands at step 4 at the
    earliest); the old check (>= k - 1) accepted 2 and then raised StaleCacheError at step 3."""
    with pytest.raises(ValueError, match=r"max_cache_age: expected an int >= 3 .*refresh_every=3.*got 2"):
        FastSlowConfig(refresh_every=3, mode="background", max_cache_age=2)
    FastSlowConfig(refresh_every=3, mode="sync", max_cache_age=2)  # sync reaches k - 1 = 2 only


def test_healthy_background_run_at_the_minimum_max_cache_age(tiny_backbone, fake_ae):
    gate = threading.Event()
    gate.set()
    fake = FakeUE(tiny_backbone.ue.geometry, gate=gate)
    with FastSlowPlanner(
        MoTBackbone(fake, fake_ae), refresh_every=3, mode="background", max_cache_age=3
    ) as p:
        p.step(make_observation(0))
        ages = []
        for i in range(1, 10):
            if i % 3 == 0:
                gate.clear()  # hold the refresh: the step that requested it plans on the old cache
                fake.in_build.clear()
            ages.append(p.step(make_observation(i)).cache_age_steps)
            if i % 3 == 0:
                assert fake.in_build.wait(30)
                gate.set()
                assert p.wait_idle(30)
    assert ages == [1, 2, 3, 1, 2, 3, 1, 2, 3] and p.last_error is None


class _OpenGateWhenWaiting(threading.Condition):
    """A condition that opens `gate` right before the fast loop starts waiting on it."""

    def __init__(self, lock, gate) -> None:
        super().__init__(lock)
        self.gate = gate

    def wait_for(self, predicate, timeout=None):
        self.gate.set()
        return super().wait_for(predicate, timeout)


def test_late_failure_of_the_previous_episode_does_not_affect_the_next_one(tiny_backbone, fake_ae):
    """Call 2 (episode 1) fails after the reset, while episode 2 waits for its first cache (call 3).
    Call 3 is held until call 2's outcome has been handled, so the order is deterministic."""
    held, new_episode = threading.Event(), threading.Event()
    fake = FakeUE(tiny_backbone.ue.geometry, gates={2: held, 3: new_episode}, fail_on={2})
    p = FastSlowPlanner(MoTBackbone(fake, fake_ae), refresh_every=1, mode="background", max_cache_age=50)
    publish = p._publish

    def publish_then_release(request, cache, error):
        publish(request, cache, error)
        if request.step == 1:
            new_episode.set()

    p._publish = publish_then_release
    try:
        p.step(make_observation(0))
        assert p.wait_idle(30)
        p.step(make_observation(1))  # call 2 starts, is held, and will fail once released
        assert fake.in_build.wait(30)
        p.reset(EpisodeInfo(scenario="next", seed=1))
        p._published = _OpenGateWhenWaiting(p._lock, held)  # release call 2 once the wait begins
        s = p.step(make_observation(5))
        assert (s.step, s.cache_step, s.cache_generation, s.ue_error) == (0, 0, 1, None)
        assert p.last_error is None and p.ue_failures == 1  # counted, but not the new episode's error
        assert p.step(make_observation(6)).ue_error is None
    finally:
        held.set()
        new_episode.set()
        p.close()


def test_reset_drops_a_refresh_of_the_previous_episode(tiny_backbone, fake_ae):
    gate = threading.Event()
    gate.set()
    fake = FakeUE(tiny_backbone.ue.geometry, gate=gate)
    bb = SpyBackbone(fake, fake_ae)
    with FastSlowPlanner(bb, refresh_every=1, mode="background", max_cache_age=50) as planner:
        planner.step(make_observation(0))
        assert planner.wait_idle(30)
        gate.clear()
        fake.in_build.clear()
        planner.step(make_observation(1))  # refresh (call 2) starts and is held mid-build
        assert fake.in_build.wait(30)
        planner.reset(EpisodeInfo(scenario="next", seed=1))
        gate.set()  # call 2 finishes after the reset: it must not be published
        s = planner.step(make_observation(5))  # waits for the first cache of the new episode
    assert s.step == 0 and s.cache_step == 0 and s.cache_generation == 1
    assert cache_generation_values(bb.used[-1]) == {3.0}  # built by call 3, the new episode's request


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_background_plan_equals_the_sync_plan_with_the_cache_current_at_that_step(tiny_backbone, executor):
    """No waiting: the UE refreshes concurrently. Each step records the cache it used; recomputing
    the AE synchronously with that cache gives the same plan, bit for bit, and the cache is what a
    synchronous prefill of that step's observation gives."""
    observations = [make_observation(i) for i in range(8)]
    with FastSlowPlanner(
        tiny_backbone, refresh_every=2, mode="background", executor=executor, ue_threads=1
    ) as p:
        steps = [p.step(o) for o in observations]
    used = {}
    for i, s in enumerate(steps):
        assert (s.cache.step, s.cache.generation) == (s.cache_step, s.cache_generation)
        assert s.cache_step % 2 == 0 and 0 <= s.cache_age_steps == i - s.cache_step
        with torch.no_grad():
            ref = tiny_backbone.act(SensorBatch.from_observations([observations[i]]), s.cache)
        assert torch.equal(ref.latents, s.output.latents)
        assert np.array_equal(ref.plan.waypoints[0].numpy(), s.waypoints)
        used[s.cache_step] = s.cache
    assert 0 in used
    for step, cache in used.items():
        fresh = tiny_backbone.prefill(SensorBatch.from_observations([observations[step]]))
        torch.testing.assert_close(cache.hidden, fresh.hidden, atol=1e-5, rtol=0)
        torch.testing.assert_close(cache.keys[-1], fresh.keys[-1], atol=1e-5, rtol=0)


def test_process_executor_needs_a_rebuildable_ue(tiny_backbone, fake_ae):
    fake = FakeUE(tiny_backbone.ue.geometry)
    with pytest.raises(ValueError, match="executor: 'process' needs a UE"):
        FastSlowPlanner(MoTBackbone(fake, fake_ae), mode="background", executor="process")


def test_identity_names_the_weights_the_ue_and_the_sampling_seed(tiny_backbone, fake_ae):
    """Episode records carry `identity()`: equal for an equal planner, different for any change that
    changes its plans (an AE weight, a UE weight, the sampling seed, the refresh period)."""
    import copy

    base = FastSlowPlanner(tiny_backbone, refresh_every=2, seed=0).identity()
    assert FastSlowPlanner(MoTBackbone(tiny_backbone.ue, copy.deepcopy(tiny_backbone.ae))).identity() == base
    assert len(base) == 64 and int(base, 16) >= 0  # a sha256 hex digest
    assert FastSlowPlanner(tiny_backbone, seed=1).identity() != base
    assert FastSlowPlanner(tiny_backbone, refresh_every=1).identity() != base
    assert FastSlowPlanner(MoTBackbone(tiny_backbone.ue, fake_ae)).identity() != base
    ae = copy.deepcopy(tiny_backbone.ae)
    with torch.no_grad():
        next(ae.head.parameters()).view(-1)[0] += 1e-6  # one head weight, one ulp-sized step
    assert FastSlowPlanner(MoTBackbone(tiny_backbone.ue, ae)).identity() != base
    ue = copy.deepcopy(tiny_backbone.ue)
    with torch.no_grad():
        next(ue._model.parameters()).view(-1)[0] += 1e-3
    assert FastSlowPlanner(MoTBackbone(ue, tiny_backbone.ae)).identity() != base
