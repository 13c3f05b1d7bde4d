"""The full MoT backbone (paper section 3.1): a frozen understanding expert + a trainable action expert.

`MoTBackbone` is a plain object, not an `nn.Module`: `backbone.ae` is the only trainable module and
`backbone.ue` is never registered as anyone's submodule, so `backbone.ae.parameters()` (what an
optimizer sees) and `backbone.ae.state_dict()` (what a checkpoint stores) hold the AE only.

Two named steps, as in openpi: `prefill(batch)` fills the UE cache (slow), `act(batch, cache)` runs
the AE against it (fast). `backbone(batch)` does both: the synchronous AutoMoT-S path.
"""

from __future__ import annotations

import torch

from automot.types import SensorBatch
from mot.action_expert import ActionExpert, MoTOutput, build_action_expert
from mot.cache import UECache
from mot.config import MoTConfig
from mot.presets import preset_config
from mot.understanding import FrozenQwen3VLExpert, UnderstandingExpert


class MoTBackbone:
    def __init__(self, ue: UnderstandingExpert, ae: ActionExpert) -> None:
        if ue.geometry != ae.geometry:
            raise ValueError(
                f"MoTBackbone: expected the AE to be built for the UE's geometry {ue.geometry}, got {ae.geometry}"
            )
        self.ue = ue
        self.ae = ae

    @classmethod
    def build(
        cls, config: MoTConfig | str = "tiny", *, seed: int = 0, device: torch.device | str = "cpu"
    ) -> MoTBackbone:
        """UE from `config.ue` (checkpoint or in-code geometry) + a fresh AE drawn from `seed`."""
        config = preset_config(config) if isinstance(config, str) else config
        ue = FrozenQwen3VLExpert.from_config(config.ue, device=device)
        ae = build_action_expert(config, ue.geometry, seed=seed, device=device)
        return cls(ue, ae)

    @property
    def config(self) -> MoTConfig:
        return self.ae.config

    def prefill(
        self, batch: SensorBatch, *, step: int = 0, time_s: float = 0.0, seed: int | None = None
    ) -> UECache:
        """The slow path: UE over history + prompt (+ its reasoning, if enabled) -> UECache.
        `seed` seeds sampled reasoning (None: the UE's configured seed)."""
        if isinstance(batch, SensorBatch):  # the trained sensor sizes, checked before the UE runs
            batch.validate().check_shapes(self.ae.input_shapes)
        return self.ue.prefill(batch, step=step, time_s=time_s, seed=seed)

    def act(
        self, batch: SensorBatch, cache: UECache, *, generator: torch.Generator | None = None
    ) -> MoTOutput:
        """The fast path: AE over the current observation against `cache` -> MoTOutput."""
        return self.ae(batch, cache, generator=generator)

    def __call__(self, batch: SensorBatch, *, generator: torch.Generator | None = None) -> MoTOutput:
        """Synchronous: prefill then act on the same batch."""
        return self.act(batch, self.prefill(batch), generator=generator)
