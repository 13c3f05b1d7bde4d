"""Outputs: decision sets, the decision NLL against a hand computation, heads by registry name."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from automot import spec
from heads import MLPHead
from mot import MoTBackbone, build_action_expert, decision_nll, preset_config
from tests.mot._support import NoisyTestHead


def test_full_decision_set_and_default_mlp_head(tiny_backbone, batch):
    with torch.no_grad():
        out = tiny_backbone(batch)
    b, k = batch.batch_size, len(spec.DECISION_HORIZONS_S)
    d_ae, d_ue = tiny_backbone.ae.config.ae.hidden_size, tiny_backbone.ue.geometry.hidden_size
    assert isinstance(tiny_backbone.ae.head, MLPHead)
    assert out.lateral_logits.shape == (b, k, len(spec.LATERAL_ACTIONS))
    assert out.longitudinal_logits.shape == (b, k, len(spec.LONGITUDINAL_ACTIONS))
    ctx = out.context.validate(tiny_backbone.ae.context_dims)
    assert ctx.plan_latents.shape == (b, spec.NUM_WAYPOINTS + spec.NUM_ROUTE_POINTS, d_ae)
    assert ctx.decision_latents.shape == (b, k, d_ae)
    assert ctx.bev_tokens.shape == (b, 16, d_ae)  # tiny preset: 4 x 4 BEV grid
    assert ctx.reasoning_tokens.shape[-1] == d_ue and ctx.reasoning_mask.dtype == torch.bool
    assert out.plan.waypoints.shape == (b, spec.NUM_WAYPOINTS, 2)
    assert out.plan.route.shape == (b, spec.NUM_ROUTE_POINTS, 2)
    # The plan is the head applied to the context (nothing else in between).
    torch.testing.assert_close(tiny_backbone.ae.head(ctx).waypoints, out.plan.waypoints)


def test_longitudinal3_set_has_no_lateral_output(tiny_backbone, batch):
    config = preset_config("tiny", {"decision_set": "longitudinal3"})
    ae = build_action_expert(config, tiny_backbone.ue.geometry).eval()
    with torch.no_grad():
        out = ae(batch, tiny_backbone.prefill(batch))
    assert out.lateral_logits is None
    assert out.longitudinal_logits.shape == (batch.batch_size, 3, len(spec.LONGITUDINAL_ACTIONS_3))
    assert config.longitudinal_actions == ("accelerate", "keep", "slow")


def test_any_registered_head_by_name(tiny_backbone, batch):
    config = preset_config("tiny", {"head": "mot_test_noisy", "head_kwargs": {"noise": 0.25}})
    bb = MoTBackbone(tiny_backbone.ue, build_action_expert(config, tiny_backbone.ue.geometry).eval())
    assert isinstance(bb.ae.head, NoisyTestHead) and bb.ae.head.noise == 0.25
    assert bb.ae.head.dims.reasoning_dim == tiny_backbone.ue.geometry.hidden_size
    cache = bb.prefill(batch)
    with torch.no_grad():
        a = bb.act(batch, cache, generator=torch.Generator().manual_seed(0))
        b = bb.act(batch, cache, generator=torch.Generator().manual_seed(0))
        c = bb.act(batch, cache, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.plan.waypoints, b.plan.waypoints)
    assert (a.plan.waypoints - c.plan.waypoints).abs().max() > 1e-3
    with pytest.raises(ValueError, match="mlp"):
        build_action_expert(preset_config("tiny", {"head": "no_such_head"}), tiny_backbone.ue.geometry)


def test_decision_nll_matches_hand_computation():
    lat = torch.tensor([[[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]])
    lon = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]]])
    lat_t = torch.tensor([[0, 1, -100]])
    lon_t = torch.tensor([[2, 0, 3]])

    def nll(logits, i):
        return -(logits[i] - math.log(sum(math.exp(v) for v in logits)))

    l_lat = [nll([2, 0, 0, 0, 0], 0), nll([0, 1, 0, 0, 0], 1)]
    l_lon = [nll([1, 1, 1, 1], 2), nll([3, 0, 0, 0], 0), nll([0, 0, 0, 5], 3)]
    out = decision_nll(lat, lon, lat_t, lon_t)
    assert out["lateral_nll"].item() == pytest.approx(sum(l_lat) / 2, abs=1e-6)
    assert out["longitudinal_nll"].item() == pytest.approx(sum(l_lon) / 3, abs=1e-6)
    assert out["loss"].item() == pytest.approx((sum(l_lat) + sum(l_lon)) / 5, abs=1e-6)
    per_h = [(l_lat[0] + l_lon[0]) / 2, (l_lat[1] + l_lon[1]) / 2, l_lon[2]]
    assert out["nll_per_horizon"].tolist() == pytest.approx(per_h, abs=1e-6)
    # Longitudinal-only set.
    out3 = decision_nll(None, lon[..., :3], None, torch.tensor([[2, 0, 1]]))
    assert "lateral_nll" not in out3 and out3["loss"] == out3["longitudinal_nll"]


def test_decision_nll_rejects_bad_targets():
    lon = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match="longitudinal_target"):
        decision_nll(None, lon, None, torch.full((2, 3), 4))
    with pytest.raises(ValueError, match="lateral_target"):
        decision_nll(torch.zeros(2, 3, 5), lon, None, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="longitudinal_target"):
        decision_nll(None, lon, None, torch.zeros(2, 2, dtype=torch.long))


def test_bad_inputs_name_the_field(tiny_backbone, batch):
    cache = tiny_backbone.prefill(batch)
    with pytest.raises(ValueError, match=r"SensorBatch\.rgb"):
        tiny_backbone.act(replace(batch, rgb=batch.rgb.float()), cache)
    with pytest.raises(ValueError, match="target_point"):
        tiny_backbone.act(replace(batch, target_point=batch.target_point[:, :1]), cache)
    one = replace(
        batch,
        **{
            k: getattr(batch, k)[:1]
            for k in ("rgb_history", "rgb", "bev", "ego_state", "ego_history", "target_point")
        },
    )
    one.prompts = batch.prompts[:1]
    with pytest.raises(ValueError, match="batch size"):
        tiny_backbone.act(one, cache)
    bad = replace(cache, keys=cache.keys[:-1], values=cache.values[:-1])
    with pytest.raises(ValueError, match="layers"):
        tiny_backbone.act(batch, bad)
