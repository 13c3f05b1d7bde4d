"""Size presets of the MoT backbone, by name, with overrides (paper section 3.1 for `paper`).

- `tiny`:  tests. A few hundred thousand parameters; builds and runs in milliseconds.
- `small`: CPU demo. UE and AE of a few million parameters each.
- `bench`: the async benchmark. UE:AE parameter ratio and token counts proportioned like the paper
           (4-frame multi-view history -> UE sequence many times the AE's).
- `paper`: the UE geometry of Qwen3-VL-4B-Instruct and an AE of about 1.6 B parameters. Build it
           on the meta device (`parameter_counts("paper")`); it is not meant to run on CPU.

`preset_config(name, overrides)` merges a nested dict of overrides, e.g.
`{"ae": {"hidden_size": 64}, "decision_set": "longitudinal3"}`.
"""

from __future__ import annotations

import copy
from typing import Any

from automot.registry import Registry
from mot.config import ActionExpertConfig, MoTConfig, QwenUEConfig

PRESETS: Registry[MoTConfig] = Registry("MoT preset")


@PRESETS.register("tiny")
def _tiny() -> MoTConfig:
    return MoTConfig(ue=QwenUEConfig(), ae=ActionExpertConfig(), preset="tiny")


@PRESETS.register("small")
def _small() -> MoTConfig:
    ue = QwenUEConfig(
        hidden_size=256,
        num_layers=6,
        num_attention_heads=8,
        num_kv_heads=2,
        head_dim=32,
        intermediate_size=768,
        mrope_section=(8, 4, 4),
        vision_depth=4,
        vision_hidden_size=128,
        vision_intermediate_size=384,
        vision_num_heads=4,
        patch_size=16,
        num_position_embeddings=64,
        deepstack_visual_indexes=(1, 2, 3),
        image_min_pixels=32 * 32,
        image_max_pixels=128 * 128,
    )
    ae = ActionExpertConfig(
        hidden_size=160,
        num_attention_heads=8,
        intermediate_size=480,
        image_encoder="mobilenetv3_small_100",
        image_grid=(2, 4),
        bev_channels=(32, 64, 96),
        bev_grid=(8, 8),
    )
    return MoTConfig(ue=ue, ae=ae, preset="small")


@PRESETS.register("bench")
def _bench() -> MoTConfig:
    # UE 2.7x the AE in parameters (paper 4.44 B : 1.64 B); the bench feeds 4 frames x 2 views of
    # 256 x 256 (64 merged vision tokens each), so the UE sequence (~550) is ~5x the AE's 103 tokens.
    ue = QwenUEConfig(
        hidden_size=384,
        num_layers=8,
        num_attention_heads=6,
        num_kv_heads=2,
        head_dim=64,
        intermediate_size=1152,
        mrope_section=(12, 10, 10),
        vision_depth=4,
        vision_hidden_size=192,
        vision_intermediate_size=768,
        vision_num_heads=3,
        patch_size=16,
        num_position_embeddings=64,
        deepstack_visual_indexes=(1, 2, 3),
        image_min_pixels=64 * 64,
        image_max_pixels=256 * 256,
    )
    ae = ActionExpertConfig(
        hidden_size=224,
        num_attention_heads=6,
        intermediate_size=640,
        image_encoder="mobilenetv3_small_100",
        image_grid=(2, 4),
        bev_channels=(32, 64, 96),
        bev_grid=(8, 8),
    )
    return MoTConfig(ue=ue, ae=ae, preset="bench")


@PRESETS.register("paper")
def _paper() -> MoTConfig:
    # Qwen3-VL-4B-Instruct: text 2560 wide, 36 layers, 32 query / 8 KV heads of 128, MLP 9728,
    # vocab 151936 (tied), rope theta 5e6 with M-RoPE sections (24, 20, 20); vision 24 layers,
    # 1024 wide, patch 16, DeepStack from vision layers 5, 11, 17.
    ue = QwenUEConfig(
        hidden_size=2560,
        num_layers=36,
        num_attention_heads=32,
        num_kv_heads=8,
        head_dim=128,
        intermediate_size=9728,
        rope_theta=5_000_000.0,
        mrope_section=(24, 20, 20),
        vocab_size=151936,
        tie_word_embeddings=True,
        vision_depth=24,
        vision_hidden_size=1024,
        vision_intermediate_size=4096,
        vision_num_heads=16,
        patch_size=16,
        num_position_embeddings=2304,
        deepstack_visual_indexes=(5, 11, 17),
        image_min_pixels=256 * 256,
        image_max_pixels=448 * 448,
    )
    # 36 layers x ~44 M (attention 16 heads of 128 over a 1536 width, SwiGLU 7680) + encoders.
    ae = ActionExpertConfig(
        hidden_size=1536,
        num_attention_heads=16,
        intermediate_size=7680,
        image_encoder="resnet34",
        image_grid=(4, 8),
        bev_channels=(64, 128, 256, 256),
        bev_grid=(8, 8),
    )
    return MoTConfig(ue=ue, ae=ae, preset="paper")


def preset_names() -> list[str]:
    return PRESETS.names()


def preset_config(name: str, overrides: dict[str, Any] | None = None) -> MoTConfig:
    """The preset `name` with a nested dict of `overrides` merged in (validated like any config)."""
    base = PRESETS.build(name).to_dict()
    merged = _merge(base, overrides or {}, path="overrides")
    return MoTConfig.from_dict(merged)


def parameter_counts(config: MoTConfig | str) -> dict[str, int]:
    """UE and AE parameter counts, built on the meta device (no memory, no weights drawn)."""
    from mot.action_expert import build_action_expert
    from mot.qwen_offline import build_raw_qwen3vl

    config = preset_config(config) if isinstance(config, str) else config
    ue, _ = build_raw_qwen3vl(config.ue, device="meta")
    ae = build_action_expert(config, config.ue.geometry(), device="meta")
    counts = {
        "ue": _count(ue.parameters()),
        "ue_text": _count(ue.model.language_model.parameters()),
        "ue_vision": _count(ue.model.visual.parameters()),
        "ae": _count(ae.parameters()),
        "ae_transformer": _count(ae.layers.parameters()) + _count(ae.norm.parameters()),
        "ae_image_encoder": _count(ae.image_tokens.parameters()),
        "ae_bev_encoder": _count(ae.bev_tokens.parameters()),
        "ae_head": _count(ae.head.parameters()),
    }
    return counts


def _count(params) -> int:
    # Tied weights are one tensor; count each storage once.
    seen: set[int] = set()
    total = 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _merge(base: dict[str, Any], overrides: dict[str, Any], *, path: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if key not in out:
            raise ValueError(f"{path}.{key}: unknown field; expected one of {sorted(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict) and key != "head_kwargs":
            out[key] = _merge(out[key], value, path=f"{path}.{key}")
        else:
            out[key] = copy.deepcopy(value)
    return out
