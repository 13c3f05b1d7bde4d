"""Ego-input dropout and speed noise (training.augment): what each option touches, and nothing else."""

from __future__ import annotations

import pytest
import torch

from automot.types import SensorBatch
from training.augment import HISTORY_SPEED, SPEED, EgoAugmentConfig, augment_ego


def batch(b: int = 64) -> SensorBatch:
    g = torch.Generator().manual_seed(0)
    return SensorBatch(
        rgb_history=torch.zeros(b, 2, 1, 3, 8, 8, dtype=torch.uint8),
        rgb=torch.zeros(b, 3, 8, 8, dtype=torch.uint8),
        bev=torch.zeros(b, 2, 8, 8),
        ego_state=torch.rand(b, 3, generator=g) * 20 + 5,  # speeds 5-25 m/s: noise of 0.5 never clamps
        ego_history=torch.rand(b, 4, 4, generator=g) * 20 + 5,
        target_point=torch.rand(b, 2, generator=g),
        prompts=["go"] * b,
    )


def test_off_by_default_returns_the_batch_untouched():
    sensors = batch()
    assert (
        not EgoAugmentConfig().active
        and augment_ego(sensors, EgoAugmentConfig(), torch.Generator()) is sensors
    )


def test_history_dropout_zeroes_whole_histories_only():
    sensors = batch()
    out = augment_ego(sensors, EgoAugmentConfig(history_dropout=0.5), torch.Generator().manual_seed(1))
    dropped = (out.ego_history == 0).flatten(1).all(1)
    kept = (out.ego_history == sensors.ego_history).flatten(1).all(1)
    assert bool((dropped ^ kept).all())  # each sample: all zero or all kept
    assert 16 < int(dropped.sum()) < 48  # about half of 64 (binomial, 4 sigma)
    assert torch.equal(out.ego_state, sensors.ego_state) and torch.equal(
        out.target_point, sensors.target_point
    )
    full = augment_ego(sensors, EgoAugmentConfig(history_dropout=1.0), torch.Generator())
    assert bool((full.ego_history == 0).all())


def test_state_dropout_keeps_the_speed():
    sensors = batch()
    out = augment_ego(sensors, EgoAugmentConfig(state_dropout=1.0), torch.Generator())
    assert torch.equal(out.ego_state[:, SPEED], sensors.ego_state[:, SPEED])
    others = [i for i in range(3) if i != SPEED]
    assert bool((out.ego_state[:, others] == 0).all())
    assert torch.equal(out.ego_history, sensors.ego_history)


def test_speed_noise_is_one_draw_per_sample_shared_by_state_and_history():
    sensors = batch()
    config = EgoAugmentConfig(speed_noise_std=0.5)
    out = augment_ego(sensors, config, torch.Generator().manual_seed(3))
    noise = out.ego_state[:, SPEED] - sensors.ego_state[:, SPEED]
    history_noise = out.ego_history[:, :, HISTORY_SPEED] - sensors.ego_history[:, :, HISTORY_SPEED]
    torch.testing.assert_close(history_noise, noise[:, None].expand_as(history_noise), atol=1e-5, rtol=0)
    assert 0.3 < float(noise.std()) < 0.7 and abs(float(noise.mean())) < 0.25  # N(0, 0.5^2), 64 draws
    other = [i for i in range(4) if i != HISTORY_SPEED]
    assert torch.equal(out.ego_history[:, :, other], sensors.ego_history[:, :, other])
    # Same generator seed, same numbers; the input is never modified in place.
    again = augment_ego(sensors, config, torch.Generator().manual_seed(3))
    assert torch.equal(again.ego_state, out.ego_state) and torch.equal(sensors.ego_state, batch().ego_state)


def test_speeds_never_go_negative():
    sensors = batch()
    sensors.ego_state[:, SPEED] = 0.0
    out = augment_ego(sensors, EgoAugmentConfig(speed_noise_std=2.0), torch.Generator().manual_seed(0))
    assert bool((out.ego_state[:, SPEED] >= 0).all()) and float(out.ego_state[:, SPEED].max()) > 0


@pytest.mark.parametrize(
    "field,value", [("history_dropout", 1.5), ("state_dropout", -0.1), ("speed_noise_std", -1.0)]
)
def test_bad_options_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"EgoAugmentConfig.{field}"):
        EgoAugmentConfig(**{field: value})


def test_the_demo_profile_trains_with_ego_dropout():
    from studies.config import EGO_DROPOUT, load_study_config

    assert load_study_config("demo").augment == EGO_DROPOUT
    assert load_study_config("full").augment == EGO_DROPOUT
    assert EgoAugmentConfig(**EGO_DROPOUT).active


def test_the_demo_profile_ends_behaviour_cloning_with_one_noisy_dagger_round():
    """The demo's MLP head drives only with on-policy data (docs/on-policy-study.md: 62.4 -> 82.5 DS):
    one round whose rollouts carry DART noise and lean to the intersection, the refiner and every
    evaluation built on that round's policy, not on behaviour cloning's."""
    from studies.config import load_study_config

    config = load_study_config("demo")
    assert config.dagger.rounds == 1 and config.dagger.noise.active and config.dagger.episodes == 4
    assert (config.dagger.extra_scenarios, config.dagger.extra_episodes) == (["intersection"], 4)
    _assert_built_on_the_last_round(config)
    # half the default refiner steps, for the 20-minute budget (BENCHMARKS.md, the demo's wall time)
    assert 2 * config.refiner.steps == load_study_config("reference").refiner.steps == 1600


def test_the_reference_profile_is_the_demo_pipeline_with_dagger_on_top():
    """The headline study (docs/reference-study.md): turn signals, ego dropout, keyframe weighting, two DAgger rounds
    with DART noise per training seed (at least 2), and both heads built on the last round's policy."""
    from studies.config import EGO_DROPOUT, load_study_config

    config = load_study_config("reference")
    assert config.augment == EGO_DROPOUT and len(config.training_seeds) >= 2
    assert config.keyframe_weight == 2.0 and load_study_config("demo").keyframe_weight == 0.0
    assert config.data.turn_signals and not load_study_config("demo").data.turn_signals
    assert config.dagger.rounds == 2 and config.dagger.noise.active
    assert (config.dagger.extra_scenarios, config.dagger.extra_episodes) == (["intersection"], 12)
    _assert_built_on_the_last_round(config)


def _assert_built_on_the_last_round(config) -> None:
    """Each training seed's last DAgger round rolls out the round before it, and the refiner and the
    MLP evaluation start from the last round's policy (not from behaviour cloning's)."""
    from studies.tasks import ae_task_id, plan_tasks

    last = config.dagger.rounds
    tasks = {t.id: t for t in plan_tasks(config)}
    for seed in config.training_seeds:
        assert tasks[f"dagger:{seed}:{last}"].deps == (ae_task_id(seed, last - 1),)
        assert tasks[f"refine:{seed}:diffusion"].deps == (f"ae:{seed}:r{last}",)
        assert tasks[f"eval:mlp:{seed}:0"].deps[0] == f"ae:{seed}:r{last}"


def test_an_unknown_or_bad_augment_field_is_refused_by_name():
    """At the study config and at both stages, before anything is built: a `ValueError` naming the
    field, not a `TypeError` from the dataclass."""
    from studies.config import load_study_config
    from training.stages import ActionExpertStage, RefinerStage

    for name in ("augment", "refiner_augment"):
        with pytest.raises(
            ValueError, match=rf"StudyConfig.{name}: EgoAugmentConfig: unknown field\(s\) \['bogus'\]"
        ):
            load_study_config("smoke", {name: {"bogus": 1}})
        with pytest.raises(
            ValueError, match=rf"StudyConfig.{name}: EgoAugmentConfig.history_dropout: expected a probability"
        ):
            load_study_config("smoke", {name: {"history_dropout": 2}})
    with pytest.raises(
        ValueError, match=r"RefinerStage.augment: EgoAugmentConfig: unknown field\(s\) \['bogus'\]"
    ):
        RefinerStage(policy="no/such/policy", augment={"bogus": 1})
    with pytest.raises(ValueError, match=r"ActionExpertStage.augment: EgoAugmentConfig: expected"):
        ActionExpertStage(augment=[0.5])
