"""Presets (paper size on the meta device), config JSON round trips, AE checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from mot import (
    ActionExpertConfig,
    MoTBackbone,
    MoTConfig,
    build_action_expert,
    load_action_expert,
    parameter_counts,
    preset_config,
    preset_names,
    save_action_expert,
)
from tests.mot._support import make_batch


def test_paper_preset_on_meta_device():
    config = preset_config("paper")
    g = config.ue.geometry()
    assert (g.hidden_size, g.num_layers, g.num_attention_heads, g.num_kv_heads, g.head_dim) == (
        2560,
        36,
        32,
        8,
        128,
    )
    ae = build_action_expert(config, g, device="meta")
    assert all(p.device.type == "meta" for p in ae.parameters())
    assert len(ae.layers) == 36 and ae.layers[0].self_attn.num_kv_heads == 8
    counts = parameter_counts(config)
    # Qwen3-VL-4B is 4.44 B parameters (tied embeddings); the paper's AE is "about 1.6 B".
    assert 4.3e9 < counts["ue"] < 4.6e9
    assert 1.5e9 < counts["ae"] < 1.75e9
    assert counts["ae"] == sum(p.numel() for p in ae.parameters())


@pytest.mark.parametrize("name", ["tiny", "small", "bench", "paper"])
def test_every_preset_round_trips_through_json(name):
    assert name in preset_names()
    config = preset_config(name)
    again = MoTConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_overrides_merge_and_unknown_fields_raise():
    c = preset_config("tiny", {"ae": {"hidden_size": 64}, "decision_set": "longitudinal3"})
    assert c.ae.hidden_size == 64 and c.ae.bev_grid == (4, 4) and c.decision_set == "longitudinal3"
    with pytest.raises(ValueError, match=r"overrides\.ae\.width"):
        preset_config("tiny", {"ae": {"width": 3}})
    with pytest.raises(ValueError, match="MoT preset"):
        preset_config("huge")
    with pytest.raises(ValueError, match="bev_context"):
        ActionExpertConfig(bev_context="pooled")
    with pytest.raises(ValueError, match="decision_set"):
        preset_config("tiny", {"decision_set": "lateral"})
    with pytest.raises(ValueError, match="num_attention_heads"):
        build_action_expert(
            preset_config("tiny", {"ae": {"num_attention_heads": 3}}), preset_config("tiny").ue.geometry()
        )


def test_action_expert_checkpoint_round_trip(tmp_path, tiny_backbone, batch):
    config = preset_config("tiny", {"decision_set": "longitudinal3", "ae": {"use_ego_token": False}})
    ae = build_action_expert(config, tiny_backbone.ue.geometry, seed=3).eval()
    save_action_expert(ae, tmp_path / "ae")
    assert sorted(p.name for p in (tmp_path / "ae").iterdir()) == [
        "action_expert.safetensors",
        "mot_config.json",
    ]
    loaded = load_action_expert(tmp_path / "ae").eval()
    assert loaded.config == config and loaded.geometry == ae.geometry
    cache = tiny_backbone.prefill(batch)
    with torch.no_grad():
        a, b = ae(batch, cache), loaded(batch, cache)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.plan.waypoints, b.plan.waypoints)
    # A checkpoint that does not fit the config is refused with the offending keys named.
    meta = json.loads((tmp_path / "ae" / "mot_config.json").read_text())
    meta["config"]["ae"]["use_ego_token"] = True
    (tmp_path / "ae" / "mot_config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="missing keys"):
        load_action_expert(tmp_path / "ae")


def test_small_preset_runs_on_cpu():
    bb = MoTBackbone.build("small", seed=0)
    bb.ae.eval()
    batch = make_batch(1, t=2, v=2, size=64, bev_size=64)
    with torch.no_grad():
        out = bb(batch)
    assert out.context.bev_tokens.shape == (1, 64, 160)  # 8 x 8 BEV tokens as in the public code
    assert torch.isfinite(out.plan.waypoints).all()
