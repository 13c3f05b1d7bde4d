"""The data that crosses package boundaries between the world (`driving`) and the models (`mot`).

Axes: B batch, T history frames, V camera views, C channels, H/W image height/width.

`Observation` is one time step as the sensors give it to a policy (unbatched, numpy). `SensorBatch`
is the batched tensor form the models consume. A `Policy` is anything the closed loop can drive with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from automot import spec
from automot.checks import check_tensor


@dataclass
class Observation:
    """One step of sensor data for a policy.

    rgb_history:  (T, V, 3, H, W) uint8, oldest first; the understanding expert's input.
    rgb:          (3, H, W) uint8, the current frame for the action expert.
    bev:          (C, Hb, Wb) float32 in [0, 1], channels `spec.BEV_CHANNELS`.
    ego_state:    (D_s,) float32, fields `spec.EGO_STATE_FIELDS`.
    ego_history:  (H, D_h) float32, fields `spec.HISTORY_FIELDS`, oldest first, current ego frame.
    target_point: (2,) float32, a route point some metres ahead, ego frame.
    prompt:       navigation instruction in words for the understanding expert.
    step, time_s: simulation step index and time.
    """

    rgb_history: np.ndarray
    rgb: np.ndarray
    bev: np.ndarray
    ego_state: np.ndarray
    ego_history: np.ndarray
    target_point: np.ndarray
    prompt: str
    step: int = 0
    time_s: float = 0.0


@dataclass
class SensorBatch:
    """Batched model input. Shapes as in `Observation` with a leading B; images stay uint8."""

    rgb_history: torch.Tensor  # (B, T, V, 3, H, W) uint8
    rgb: torch.Tensor  # (B, 3, H, W) uint8
    bev: torch.Tensor  # (B, C, Hb, Wb) float32
    ego_state: torch.Tensor  # (B, D_s)
    ego_history: torch.Tensor  # (B, H, D_h)
    target_point: torch.Tensor  # (B, 2)
    prompts: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return self.rgb.shape[0]

    def validate(self) -> SensorBatch:
        """Shapes, dtypes (images uint8, everything else float32: nothing is cast), finite values and
        one non-empty prompt per sample; raises `ValueError` naming the field."""
        dims: dict[str, int] = {}
        check_tensor(
            "SensorBatch.rgb_history",
            self.rgb_history,
            ("B", None, None, 3, None, None),
            dims=dims,
            dtype=torch.uint8,
        )
        check_tensor("SensorBatch.rgb", self.rgb, ("B", 3, None, None), dims=dims, dtype=torch.uint8)
        f32 = torch.float32
        check_tensor(
            "SensorBatch.bev", self.bev, ("B", len(spec.BEV_CHANNELS), None, None), dims=dims, dtype=f32
        )
        check_tensor("SensorBatch.ego_state", self.ego_state, ("B", spec.EGO_STATE_DIM), dims=dims, dtype=f32)
        check_tensor(
            "SensorBatch.ego_history",
            self.ego_history,
            ("B", spec.HISTORY_LEN, spec.HISTORY_DIM),
            dims=dims,
            dtype=f32,
        )
        check_tensor("SensorBatch.target_point", self.target_point, ("B", 2), dims=dims, dtype=f32)
        if not isinstance(self.prompts, (list, tuple)) or len(self.prompts) != dims["B"]:
            got = (
                len(self.prompts) if isinstance(self.prompts, (list, tuple)) else type(self.prompts).__name__
            )
            raise ValueError(f"SensorBatch.prompts: expected {dims['B']} prompts (one per sample), got {got}")
        for i, prompt in enumerate(self.prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(
                    f"SensorBatch.prompts: expected a non-empty navigation prompt per sample, got {prompt!r} at index {i}"
                )
        return self

    def shapes(self) -> dict[str, list[int]]:
        """Per-sample sensor shapes: rgb_history [T, V, 3, H, W], rgb [3, H, W], bev [C, Hb, Wb]."""
        return {
            "rgb_history": list(self.rgb_history.shape[1:]),
            "rgb": list(self.rgb.shape[1:]),
            "bev": list(self.bev.shape[1:]),
        }

    def check_shapes(
        self, expected: dict[str, list[int]] | None, *, source: str = "the policy"
    ) -> SensorBatch:
        """`ValueError` naming both shapes when a sensor differs from what `source` was trained with."""
        if not expected:
            return self
        got = self.shapes()
        for name, want in expected.items():
            if name in got and list(want) != got[name]:
                raise ValueError(
                    f"SensorBatch.{name}: expected per-sample shape {tuple(want)} (what {source} was trained "
                    f"with), got {tuple(got[name])}"
                )
        return self

    def select(self, indices: list[int]) -> SensorBatch:
        """The samples at `indices`, in that order."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return SensorBatch(
            rgb_history=self.rgb_history[idx],
            rgb=self.rgb[idx],
            bev=self.bev[idx],
            ego_state=self.ego_state[idx],
            ego_history=self.ego_history[idx],
            target_point=self.target_point[idx],
            prompts=[self.prompts[i] for i in indices],
        )

    def to(self, device: torch.device | str) -> SensorBatch:
        return SensorBatch(
            rgb_history=self.rgb_history.to(device),
            rgb=self.rgb.to(device),
            bev=self.bev.to(device),
            ego_state=self.ego_state.to(device),
            ego_history=self.ego_history.to(device),
            target_point=self.target_point.to(device),
            prompts=list(self.prompts),
        )

    @classmethod
    def from_observations(cls, observations: list[Observation]) -> SensorBatch:
        if not observations:
            raise ValueError("observations: expected at least one Observation, got an empty list")

        def stack(name: str, dtype: torch.dtype) -> torch.Tensor:
            return torch.stack([torch.as_tensor(np.asarray(getattr(o, name))) for o in observations]).to(
                dtype
            )

        return cls(
            rgb_history=stack("rgb_history", torch.uint8),
            rgb=stack("rgb", torch.uint8),
            bev=stack("bev", torch.float32),
            ego_state=stack("ego_state", torch.float32),
            ego_history=stack("ego_history", torch.float32),
            target_point=stack("target_point", torch.float32),
            prompts=[o.prompt for o in observations],
        ).validate()


@dataclass
class PolicyOutput:
    """What a policy returns each step: waypoints (Nw, 2) and optionally route (Nr, 2), ego frame,
    metres; `reasoning` is the text the policy's understanding expert generated for the plan (the
    closed loop records it), None for a policy without one."""

    waypoints: np.ndarray
    route: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    reasoning: str | None = None


@dataclass
class EpisodeInfo:
    """Handed to `Policy.reset` at the start of an episode. `env` is the privileged simulator handle
    (only the expert may use it; learned policies must ignore it)."""

    scenario: str
    seed: int
    env: Any = None


@runtime_checkable
class Policy(Protocol):
    """Anything the closed loop can drive with."""

    def reset(self, episode: EpisodeInfo) -> None: ...

    def plan(self, observation: Observation) -> PolicyOutput: ...
