"""Configuration of the MoT backbone (paper section 3.1): understanding expert, action expert, outputs.

Three small dataclasses, each validated on construction, nested in `MoTConfig`, which round-trips
through JSON (`to_dict` / `from_dict`) so checkpoints can carry their config. Named presets and
overrides live in `mot.presets`.

The action expert (AE) does not choose its depth, KV-head count, head width or rotary base: those
must equal the understanding expert's (UE), because in every layer the AE's queries attend over the
UE's cached keys and values. `UEGeometry` carries those numbers from the UE to the AE.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from automot import spec
from automot.checks import check_choice, check_positive

# Decision vocabularies: "full" is lateral x longitudinal (NuSync), "longitudinal3" the CARLA set.
DECISION_SETS: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...]]] = {
    "full": (spec.LATERAL_ACTIONS, spec.LONGITUDINAL_ACTIONS),
    "longitudinal3": (None, spec.LONGITUDINAL_ACTIONS_3),
}
BEV_CONTEXTS = ("encoder", "final")
# Order of the planning queries inside the planning task (the public AutoMoT code: route first).
PLAN_ORDERS = ("route_first", "waypoints_first")
# How the UE's image tokens attend inside their own image block (see mot.mask).
UE_IMAGE_ATTENTION = ("bidirectional", "causal")
REASONING_SAMPLING = ("greedy", "sample")


def _check_int(name: str, value: object, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def _check_pair(name: str, value: object) -> None:
    if not (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and v >= 1 for v in value)
    ):
        raise ValueError(f"{name}: expected two ints >= 1, got {value!r}")


@dataclass(frozen=True)
class UEGeometry:
    """What the action expert must share with the understanding expert's text transformer."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    num_attention_heads: int
    rope_theta: float

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name != "rope_theta":
                _check_int(f"UEGeometry.{f.name}", getattr(self, f.name))
        check_positive("UEGeometry.rope_theta", self.rope_theta)
        if self.head_dim % 2:
            raise ValueError(
                f"UEGeometry.head_dim: expected an even number (rotary pairs), got {self.head_dim}"
            )


@dataclass
class ReasoningConfig:
    """Chain-of-thought in the slow loop (paper section 3.1: the UE "outputs semantic reasoning").

    After the prompt the UE generates up to `max_new_tokens` tokens (stopping at end-of-turn); their
    keys/values join the cache the action expert attends to and their hidden states become the
    planning head's reasoning tokens. 0 = off: the cache holds system prompt, images and prompt only.
    `sampling="sample"` draws tokens with a generator seeded per refresh (same seed, same text).
    """

    max_new_tokens: int = 0
    sampling: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("ReasoningConfig.max_new_tokens", self.max_new_tokens, low=0)
        check_choice("ReasoningConfig.sampling", self.sampling, REASONING_SAMPLING)
        check_positive("ReasoningConfig.temperature", self.temperature)
        if self.top_k is not None:
            _check_int("ReasoningConfig.top_k", self.top_k)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"ReasoningConfig.seed: expected an int, got {self.seed!r}")

    @property
    def enabled(self) -> bool:
        return self.max_new_tokens > 0


@dataclass
class QwenUEConfig:
    """The understanding expert: a local Qwen3-VL checkpoint, or a Qwen3-VL geometry built in code.

    With `checkpoint` set, every geometry field below is ignored and read from the checkpoint. Without
    it, a randomly initialised `Qwen3VLForConditionalGeneration` of this geometry is built offline
    (seeded by `seed`), with the offline word-level tokenizer of `mot.qwen_offline`.
    """

    checkpoint: str | None = None
    # Text transformer (the part whose keys/values the AE attends to).
    hidden_size: int = 64
    num_layers: int = 2
    num_attention_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    intermediate_size: int = 128
    rope_theta: float = 10000.0
    # Interleaved M-RoPE split of the rotary pairs over (time, height, width); sums to head_dim / 2.
    mrope_section: tuple[int, int, int] = (4, 2, 2)
    # None = exactly the offline tokenizer's vocabulary; a larger number pads the embedding table
    # (the paper preset uses Qwen's 151936 so that parameter counts are right).
    vocab_size: int | None = None
    tie_word_embeddings: bool = False
    # Vision tower.
    vision_depth: int = 2
    vision_hidden_size: int = 32
    vision_intermediate_size: int = 64
    vision_num_heads: int = 2
    patch_size: int = 8
    spatial_merge_size: int = 2
    num_position_embeddings: int = 16
    deepstack_visual_indexes: tuple[int, ...] = (0, 1)
    # Image preprocessing bounds (pixels per image after Qwen's smart resize).
    image_min_pixels: int = 16 * 16
    image_max_pixels: int = 64 * 64
    system_prompt: str = "You are a careful driver. Describe the scene and decide what to do."
    seed: int = 0
    # Attention inside each image block of the UE's prefill: "bidirectional" (paper section 3.1,
    # "self-modal bidirectional", and the public AutoMoT code) or "causal" (Qwen3-VL as pretrained).
    # Applies to a loaded checkpoint too, and to the UE scene-pretraining stage.
    image_attention: str = "bidirectional"
    reasoning: ReasoningConfig = field(default_factory=ReasoningConfig)

    def __post_init__(self) -> None:
        self.mrope_section = tuple(self.mrope_section)
        self.deepstack_visual_indexes = tuple(self.deepstack_visual_indexes)
        check_choice("QwenUEConfig.image_attention", self.image_attention, UE_IMAGE_ATTENTION)
        if isinstance(self.reasoning, dict):
            known = {f.name for f in fields(ReasoningConfig)}
            bad = sorted(set(self.reasoning) - known)
            if bad:
                raise ValueError(
                    f"QwenUEConfig.reasoning: unknown fields {bad}; expected a subset of {sorted(known)}"
                )
            self.reasoning = ReasoningConfig(**self.reasoning)
        if not isinstance(self.reasoning, ReasoningConfig):
            raise ValueError(
                f"QwenUEConfig.reasoning: expected a ReasoningConfig or dict, got {type(self.reasoning).__name__}"
            )
        if self.checkpoint is not None:
            if not isinstance(self.checkpoint, str) or not self.checkpoint:
                raise ValueError(
                    f"QwenUEConfig.checkpoint: expected a non-empty path or None, got {self.checkpoint!r}"
                )
            return
        for name in (
            "hidden_size",
            "num_layers",
            "num_attention_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vision_depth",
            "vision_hidden_size",
            "vision_intermediate_size",
            "vision_num_heads",
            "patch_size",
            "spatial_merge_size",
            "num_position_embeddings",
            "image_min_pixels",
            "image_max_pixels",
        ):
            _check_int(f"QwenUEConfig.{name}", getattr(self, name))
        check_positive("QwenUEConfig.rope_theta", self.rope_theta)
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"QwenUEConfig.num_attention_heads: expected a multiple of num_kv_heads={self.num_kv_heads}, "
                f"got {self.num_attention_heads}"
            )
        if len(self.mrope_section) != 3 or sum(self.mrope_section) * 2 != self.head_dim:
            raise ValueError(
                f"QwenUEConfig.mrope_section: expected 3 ints summing to head_dim / 2 = {self.head_dim // 2}, "
                f"got {self.mrope_section}"
            )
        if math.isqrt(self.num_position_embeddings) ** 2 != self.num_position_embeddings:
            raise ValueError(
                "QwenUEConfig.num_position_embeddings: expected a perfect square (the vision tower interpolates "
                f"a square grid), got {self.num_position_embeddings}"
            )
        if self.vision_hidden_size % self.vision_num_heads:
            raise ValueError(
                f"QwenUEConfig.vision_hidden_size: expected a multiple of vision_num_heads={self.vision_num_heads}, "
                f"got {self.vision_hidden_size}"
            )
        bad = [i for i in self.deepstack_visual_indexes if not 0 <= i < self.vision_depth]
        if bad:
            raise ValueError(
                f"QwenUEConfig.deepstack_visual_indexes: expected indexes in [0, {self.vision_depth}), got {bad}"
            )
        if len(self.deepstack_visual_indexes) > self.num_layers:
            raise ValueError(
                f"QwenUEConfig.deepstack_visual_indexes: expected at most num_layers={self.num_layers} entries "
                f"(one per early text layer), got {len(self.deepstack_visual_indexes)}"
            )
        if self.image_min_pixels > self.image_max_pixels:
            raise ValueError(
                f"QwenUEConfig.image_min_pixels: expected <= image_max_pixels={self.image_max_pixels}, "
                f"got {self.image_min_pixels}"
            )
        if self.vocab_size is not None:
            _check_int("QwenUEConfig.vocab_size", self.vocab_size)

    def geometry(self) -> UEGeometry:
        """The geometry of the in-code build (a checkpoint's geometry is read when it is loaded)."""
        if self.checkpoint is not None:
            raise ValueError(
                "QwenUEConfig.geometry: expected an in-code geometry, got a checkpoint; "
                "use mot.understanding.ue_geometry(config) to read it from the checkpoint"
            )
        return UEGeometry(
            num_layers=self.num_layers,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            hidden_size=self.hidden_size,
            num_attention_heads=self.num_attention_heads,
            rope_theta=float(self.rope_theta),
        )


@dataclass
class ActionExpertConfig:
    """The action expert's own choices. Depth, KV heads, head width and rotary base come from the UE."""

    hidden_size: int = 48
    # None = the UE's query-head count; any multiple of the UE's KV heads is allowed (GQA).
    num_attention_heads: int | None = None
    intermediate_size: int = 96
    rms_norm_eps: float = 1e-6
    # Current RGB frame: a timm backbone (random init; no hub access), pooled to an image token grid.
    image_encoder: str = "test_resnet"
    image_grid: tuple[int, int] = (2, 2)
    # BEV raster: strided convolutions, pooled to a token grid (the public AutoMoT code uses 8 x 8).
    bev_channels: tuple[int, ...] = (16, 32)
    bev_grid: tuple[int, int] = (4, 4)
    # One token from (ego state, ego history) next to the target-point token.
    use_ego_token: bool = True
    target_scale_m: float = 20.0
    # Mask reading: True = causal across modalities (input groups) inside a task, bidirectional inside
    # each (section 3.1: "cross-modal ... causal ... self-modal bidirectional"; the public code makes
    # every AE input group its own causal block); False = bidirectional across the modalities of a
    # task (the figure-3 text).
    cross_modal_causal: bool = True
    # Planning-query order inside the planning task (matters with cross_modal_causal and for RoPE).
    plan_order: str = "route_first"
    # Which BEV tokens the planning head gets: the encoder's (paper A.3) or the AE's final latents.
    bev_context: str = "encoder"
    init_std: float = 0.02

    def __post_init__(self) -> None:
        self.image_grid = tuple(self.image_grid)
        self.bev_grid = tuple(self.bev_grid)
        self.bev_channels = tuple(self.bev_channels)
        _check_int("ActionExpertConfig.hidden_size", self.hidden_size)
        if self.num_attention_heads is not None:
            _check_int("ActionExpertConfig.num_attention_heads", self.num_attention_heads)
        _check_int("ActionExpertConfig.intermediate_size", self.intermediate_size)
        check_positive("ActionExpertConfig.rms_norm_eps", self.rms_norm_eps)
        if not isinstance(self.image_encoder, str) or not self.image_encoder:
            raise ValueError(
                f"ActionExpertConfig.image_encoder: expected a timm model name, got {self.image_encoder!r}"
            )
        _check_pair("ActionExpertConfig.image_grid", self.image_grid)
        _check_pair("ActionExpertConfig.bev_grid", self.bev_grid)
        if not self.bev_channels or any(not isinstance(c, int) or c < 1 for c in self.bev_channels):
            raise ValueError(
                f"ActionExpertConfig.bev_channels: expected a non-empty tuple of ints >= 1, got {self.bev_channels}"
            )
        check_positive("ActionExpertConfig.target_scale_m", self.target_scale_m)
        check_choice("ActionExpertConfig.bev_context", self.bev_context, BEV_CONTEXTS)
        check_choice("ActionExpertConfig.plan_order", self.plan_order, PLAN_ORDERS)
        if not isinstance(self.cross_modal_causal, bool):
            raise ValueError(
                f"ActionExpertConfig.cross_modal_causal: expected a bool, got {self.cross_modal_causal!r}"
            )
        check_positive("ActionExpertConfig.init_std", self.init_std)

    def num_heads(self, geometry: UEGeometry) -> int:
        heads = geometry.num_attention_heads if self.num_attention_heads is None else self.num_attention_heads
        if heads % geometry.num_kv_heads:
            raise ValueError(
                f"ActionExpertConfig.num_attention_heads: expected a multiple of the UE's num_kv_heads="
                f"{geometry.num_kv_heads}, got {heads}"
            )
        return heads


@dataclass
class MoTConfig:
    """The whole backbone: UE, AE, decision vocabulary and planning head (by registry name)."""

    ue: QwenUEConfig = field(default_factory=QwenUEConfig)
    ae: ActionExpertConfig = field(default_factory=ActionExpertConfig)
    decision_set: str = "full"
    head: str = "mlp"
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    preset: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.ue, dict):
            self.ue = QwenUEConfig(**self.ue)
        if isinstance(self.ae, dict):
            self.ae = ActionExpertConfig(**self.ae)
        if not isinstance(self.ue, QwenUEConfig):
            raise ValueError(f"MoTConfig.ue: expected a QwenUEConfig, got {type(self.ue).__name__}")
        if not isinstance(self.ae, ActionExpertConfig):
            raise ValueError(f"MoTConfig.ae: expected an ActionExpertConfig, got {type(self.ae).__name__}")
        check_choice("MoTConfig.decision_set", self.decision_set, sorted(DECISION_SETS))
        if not isinstance(self.head, str) or not self.head:
            raise ValueError(f"MoTConfig.head: expected a registered head name, got {self.head!r}")
        if not isinstance(self.head_kwargs, dict):
            raise ValueError(f"MoTConfig.head_kwargs: expected a dict, got {type(self.head_kwargs).__name__}")

    @property
    def lateral_actions(self) -> tuple[str, ...] | None:
        return DECISION_SETS[self.decision_set][0]

    @property
    def longitudinal_actions(self) -> tuple[str, ...]:
        return DECISION_SETS[self.decision_set][1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists); `from_dict` restores an equal config."""
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MoTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"MoTConfig: unknown fields {unknown}; expected a subset of {sorted(known)}")
        data = dict(data)
        for key, sub in (("ue", QwenUEConfig), ("ae", ActionExpertConfig)):
            if key in data and isinstance(data[key], dict):
                sub_known = {f.name for f in fields(sub)}
                bad = sorted(set(data[key]) - sub_known)
                if bad:
                    raise ValueError(
                        f"MoTConfig.{key}: unknown fields {bad}; expected a subset of {sorted(sub_known)}"
                    )
                data[key] = sub(**data[key])
        return cls(**data)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
