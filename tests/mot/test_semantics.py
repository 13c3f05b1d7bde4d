"""What the hybrid mask and the cache must mean, checked on outputs of the tiny backbone."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch

from tests.mot._support import make_batch


def _act(ae, batch, cache):
    with torch.no_grad():
        return ae(batch, cache)


def test_decisions_do_not_see_planning_queries(tiny_backbone, batch):
    cache = tiny_backbone.prefill(batch)
    ae = copy.deepcopy(tiny_backbone.ae)
    before = _act(ae, batch, cache)
    with torch.no_grad():
        ae.plan_queries.add_(torch.randn(ae.plan_queries.shape, generator=torch.Generator().manual_seed(1)))
    after = _act(ae, batch, cache)
    assert torch.equal(before.lateral_logits, after.lateral_logits)
    assert torch.equal(before.longitudinal_logits, after.longitudinal_logits)
    assert torch.equal(before.context.decision_latents, after.context.decision_latents)
    # ... while the planning outputs did move (the perturbation was not a no-op).
    assert (before.plan.waypoints - after.plan.waypoints).abs().max() > 1e-4


def test_planning_sees_decision_queries_and_observations_do_not(tiny_backbone, batch):
    cache = tiny_backbone.prefill(batch)
    ae = copy.deepcopy(tiny_backbone.ae)
    ae.config.ae.bev_context = "final"  # expose the final BEV latents (observation task) in the context
    before = _act(ae, batch, cache)
    with torch.no_grad():
        ae.decision_queries.add_(
            torch.randn(ae.decision_queries.shape, generator=torch.Generator().manual_seed(2))
        )
    after = _act(ae, batch, cache)
    assert (before.plan.waypoints - after.plan.waypoints).abs().max() > 1e-4
    assert (before.context.plan_latents - after.context.plan_latents).abs().max() > 1e-4
    # Observation tokens (an earlier task) are unaffected by the decision queries.
    assert torch.equal(before.context.bev_tokens, after.context.bev_tokens)


def test_ue_cache_does_not_depend_on_any_action_input(tiny_backbone, batch):
    cache = tiny_backbone.prefill(batch)
    g = torch.Generator().manual_seed(5)
    other = replace(
        batch,
        rgb=torch.randint(0, 256, batch.rgb.shape, generator=g, dtype=torch.uint8),
        bev=torch.rand(batch.bev.shape, generator=g),
        ego_state=torch.randn(batch.ego_state.shape, generator=g),
        ego_history=torch.randn(batch.ego_history.shape, generator=g),
        target_point=torch.randn(batch.target_point.shape, generator=g),
    )
    cache2 = tiny_backbone.prefill(other)
    for a, b in zip(
        (*cache.keys, *cache.values, cache.hidden), (*cache2.keys, *cache2.values, cache2.hidden)
    ):
        assert torch.equal(a, b)
    # And running the AE never writes into the cache.
    snapshot = [t.clone() for t in (*cache.keys, *cache.values, cache.hidden)]
    _act(tiny_backbone.ae, other, cache)
    for a, b in zip(snapshot, (*cache.keys, *cache.values, cache.hidden)):
        assert torch.equal(a, b)
    # The AE output does depend on its own inputs.
    assert (
        _act(tiny_backbone.ae, batch, cache).latents - _act(tiny_backbone.ae, other, cache).latents
    ).abs().max() > 1e-4


def test_ae_outputs_change_when_the_ue_image_changes(tiny_backbone, batch):
    out = _act(tiny_backbone.ae, batch, tiny_backbone.prefill(batch))
    g = torch.Generator().manual_seed(9)
    history = torch.randint(0, 256, batch.rgb_history.shape, generator=g, dtype=torch.uint8)
    changed = replace(batch, rgb_history=history)
    out2 = _act(tiny_backbone.ae, changed, tiny_backbone.prefill(changed))
    assert (out.longitudinal_logits - out2.longitudinal_logits).abs().max() > 1e-5
    assert (out.plan.waypoints - out2.plan.waypoints).abs().max() > 1e-5
    assert (out.context.reasoning_tokens - out2.context.reasoning_tokens).abs().max() > 1e-3


def test_left_padding_does_not_change_a_sample(tiny_backbone):
    """A sample alone and the same sample next to a longer prompt (so it is left-padded) agree."""
    full = make_batch(2, seed=4, prompts=("go", "keep lane and follow the car ahead then turn right"))
    alone = make_batch(2, seed=4, prompts=("go", "go"))
    alone = replace(
        alone,
        **{
            k: getattr(alone, k)[:1]
            for k in ("rgb_history", "rgb", "bev", "ego_state", "ego_history", "target_point")
        },
    )
    alone.prompts = ["go"]
    c_full, c_alone = tiny_backbone.prefill(full), tiny_backbone.prefill(alone)
    assert c_full.seq_len > c_alone.seq_len and not bool(c_full.mask[0].all())
    assert torch.equal(c_full.position_offset[:1], c_alone.position_offset)
    out_full, out_alone = _act(tiny_backbone.ae, full, c_full), _act(tiny_backbone.ae, alone, c_alone)
    torch.testing.assert_close(out_full.latents[:1], out_alone.latents, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_full.plan.waypoints[:1], out_alone.plan.waypoints, atol=1e-5, rtol=0)


def test_ae_query_heads_may_differ_from_the_ue(tiny_backbone, batch):
    """GQA: the AE may use any multiple of the UE's KV heads (here 2 = no grouping, UE has 4)."""
    from mot import build_action_expert, preset_config

    ae = build_action_expert(
        preset_config("tiny", {"ae": {"num_attention_heads": 2}}), tiny_backbone.ue.geometry
    )
    ae.eval()
    cache = tiny_backbone.prefill(batch)
    before = _act(ae, batch, cache)
    assert ae.layers[0].self_attn.q_proj.out_features == 2 * tiny_backbone.ue.geometry.head_dim
    with torch.no_grad():
        ae.plan_queries.mul_(-3.0)
    after = _act(ae, batch, cache)
    assert torch.equal(before.longitudinal_logits, after.longitudinal_logits)
    assert torch.isfinite(after.plan.waypoints).all()


def test_cross_modal_causal_option_reaches_the_model(tiny_backbone):
    from mot import build_action_expert, preset_config

    g = tiny_backbone.ue.geometry
    causal = build_action_expert(preset_config("tiny"), g)  # the default: cross-modal causal
    bidirectional = build_action_expert(preset_config("tiny", {"ae": {"cross_modal_causal": False}}), g)
    rgb, bev = causal.slices["rgb"], causal.slices["bev"]
    assert bidirectional.ae_mask[rgb, bev].all() and bidirectional.ae_mask[bev, rgb].all()
    assert not causal.ae_mask[rgb, bev].any() and causal.ae_mask[bev, rgb].all()


def test_split_and_stack_of_caches_plan_like_a_fresh_prefill(tiny_backbone, batch):
    """Per-sample caches re-batched in another order and padding give the same AE outputs."""
    import torch

    from mot.cache import UECache

    cache = tiny_backbone.prefill(batch)
    parts = cache.split()
    assert all(p.batch_size == 1 and bool(p.mask.all()) for p in parts)
    restacked = UECache.stack(parts)
    ref = tiny_backbone.act(batch, cache)
    out = tiny_backbone.act(batch, restacked)
    assert torch.allclose(out.plan.waypoints, ref.plan.waypoints, atol=1e-5)
    assert torch.allclose(out.longitudinal_logits, ref.longitudinal_logits, atol=1e-5)
    # Reversed order: the same per-sample results, reversed.
    order = list(range(batch.batch_size))[::-1]
    rev = tiny_backbone.act(batch.select(order), UECache.stack([parts[i] for i in order]))
    assert torch.allclose(rev.plan.waypoints, ref.plan.waypoints[order], atol=1e-5)
