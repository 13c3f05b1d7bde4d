"""Training-time perturbations of the ego inputs against the ego-speed shortcut (options, off by default).

A planner that sees its own speed and past motion can copy them into the plan (Codevilla et al. 2019,
"the inertia problem"; ChauffeurNet's past-motion dropout, Bansal et al. 2018): in closed loop a small
under-prediction of speed feeds back through the ego state and the car creeps to a stop. These options
make the copy less reliable during training, so the plan has to come from the scene:

- `history_dropout`: per sample, with this probability the ego history (B, 4, 4) is zeroed;
- `state_dropout`: per sample, with this probability the acceleration and yaw rate are zeroed (the
  speed stays: the first waypoints cannot be placed without it);
- `speed_noise_std`: Gaussian noise (m/s) on the current speed and the history's speeds, one draw per
  sample (the labels are untouched, so the network learns to lean less on the exact value).

Axes: B batch. Randomness comes from the generator passed in (the stage seeds it), never the global RNG.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from automot import spec
from automot.checks import check_positive
from automot.types import SensorBatch
from heads.types import ActionContext

SPEED = spec.EGO_STATE_FIELDS.index("speed")
HISTORY_SPEED = spec.HISTORY_FIELDS.index("speed")


@dataclass
class EgoAugmentConfig:
    history_dropout: float = 0.0
    state_dropout: float = 0.0
    speed_noise_std: float = 0.0

    def __post_init__(self) -> None:
        for name in ("history_dropout", "state_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"EgoAugmentConfig.{name}: expected a probability in [0, 1], got {value}")
        check_positive("EgoAugmentConfig.speed_noise_std", self.speed_noise_std, allow_zero=True)

    @property
    def active(self) -> bool:
        return bool(self.history_dropout or self.state_dropout or self.speed_noise_std)


def as_augment_config(value: EgoAugmentConfig | dict | None, *, field: str) -> EgoAugmentConfig:
    """None (off), a dict of `EgoAugmentConfig` fields or a config -> a config; an unknown field or a
    bad value is a `ValueError` naming `field`."""
    from automot.config import build_config

    try:
        return build_config(EgoAugmentConfig, value)
    except ValueError as err:
        raise ValueError(f"{field}: {err}") from None


def perturb_ego(
    ego_state: torch.Tensor, ego_history: torch.Tensor, config: EgoAugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perturbed copies of ego_state (B, 3) and ego_history (B, 4, 4) as `config` says."""
    state = ego_state.clone()
    history = ego_history.clone()
    b = state.shape[0]

    def draw(*shape) -> torch.Tensor:
        return torch.rand(*shape, generator=generator).to(state.device)

    if config.speed_noise_std:
        noise = torch.randn(b, generator=generator).to(state.device, state.dtype) * config.speed_noise_std
        state[:, SPEED] = (state[:, SPEED] + noise).clamp_min(0.0)
        history[:, :, HISTORY_SPEED] = (history[:, :, HISTORY_SPEED] + noise[:, None]).clamp_min(0.0)
    if config.state_dropout:
        keep = (draw(b) >= config.state_dropout).to(state.dtype)
        others = [i for i in range(state.shape[1]) if i != SPEED]
        state[:, others] = state[:, others] * keep[:, None]
    if config.history_dropout:
        keep = (draw(b) >= config.history_dropout).to(history.dtype)
        history = history * keep[:, None, None]
    return state, history


def augment_ego(sensors: SensorBatch, config: EgoAugmentConfig, generator: torch.Generator) -> SensorBatch:
    """A copy of `sensors` with the ego inputs perturbed as `config` says (ego_state (B, 3), ego_history (B, 4, 4))."""
    if not config.active:
        return sensors
    state, history = perturb_ego(sensors.ego_state, sensors.ego_history, config, generator)
    return dataclasses.replace(sensors, ego_state=state, ego_history=history)


def augment_context(
    ctx: ActionContext, config: EgoAugmentConfig, generator: torch.Generator
) -> ActionContext:
    """A copy of a head's context with its ego inputs perturbed: what a head trained over a frozen AE
    (the refiner stage, whose contexts are memoised from clean inputs) reads of the ego state."""
    if not config.active:
        return ctx
    state, history = perturb_ego(ctx.ego_state, ctx.ego_history, config, generator)
    return dataclasses.replace(ctx, ego_state=state, ego_history=history)
