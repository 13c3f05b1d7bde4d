"""Oracle: the AE against the cached UE keys/values equals ONE masked attention pass per layer over the
concatenated [UE ; AE] sequence, built here independently from the raw weights (paper eqs. 3-5).

The oracle runs both experts layer by layer itself: UE tokens through the Qwen3-VL layer weights
(embeddings, image features scattered into the placeholders, DeepStack additions), AE tokens through
the AE's weights, q/k/v of both concatenated, M-RoPE from Qwen's own rotary module over the whole
sequence, and one explicit softmax attention under a hand-written mask. Nothing of the AE's cached
path (SDPA, its RoPE, its mask builder, the cache) is used.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb

from mot import FrozenQwen3VLExpert, MoTBackbone, build_action_expert, preset_config
from mot.config import ReasoningConfig
from mot.reasoning import generate_reasoning, output_cache
from tests.mot._support import make_batch


def _heads(x, proj, norm, n_heads, head_dim):
    b, s, _ = x.shape
    h = proj(x).view(b, s, n_heads, head_dim)
    return (norm(h) if norm is not None else h).transpose(1, 2)


# The mask variants: (UE image attention, AE cross-modal causal, planning order).
VARIANTS = {
    "reference": ("bidirectional", True, "route_first"),  # the default: section 3.1 + public code
    "figure3": ("causal", False, "waypoints_first"),  # Qwen as pretrained, figure-3 reading
}


def _variant_backbone(tiny_backbone, name):
    image_attention, cross_modal, order = VARIANTS[name]
    config = preset_config(
        "tiny",
        {
            "ue": {"image_attention": image_attention},
            "ae": {"cross_modal_causal": cross_modal, "plan_order": order},
        },
    )
    ue = tiny_backbone.ue
    ue = FrozenQwen3VLExpert(ue._model, ue.processor, image_attention=image_attention)
    return MoTBackbone(ue, build_action_expert(config, ue.geometry, seed=0).eval())


def _image_blocks(ids, start_id, end_id):
    """(B, S) long: the index of the image block a token belongs to (vision start..end), -1 for text."""
    out = torch.full_like(ids, -1)
    for i in range(ids.shape[0]):
        block, inside = -1, False
        for j, t in enumerate(ids[i].tolist()):
            if t == start_id:
                block, inside = block + 1, True
            if inside:
                out[i, j] = block
            if t == end_id:
                inside = False
    return out


def _oracle(bb, batch, generated=None):
    """`generated`: (token ids (B, N), mask (B, N)) of reasoning appended after the prompt."""
    ue, ae = bb.ue, bb.ae
    image_attention, cross_modal, order = (
        ue.image_attention,
        ae.config.ae.cross_modal_causal,
        ae.config.ae.plan_order,
    )
    hf = ue._model
    lm = hf.model.language_model
    inputs = ue.encode(batch)
    ids, am = inputs["input_ids"], inputs["padding_mask"].bool()
    pos_ue = inputs["position_ids"]  # (3, B, S) M-RoPE ids from Qwen's get_rope_index
    b = ids.shape[0]
    g = ue.geometry
    d, hkv = g.head_dim, g.num_kv_heads
    hq = g.num_attention_heads
    assert ae.num_heads == hq, "the oracle concatenates queries: use equal head counts"
    vis = ids == hf.config.image_token_id
    blocks = _image_blocks(ids, hf.config.vision_start_token_id, hf.config.vision_end_token_id)
    first = torch.stack([pos_ue[:, i, am[i]].max() + 1 for i in range(b)])
    if generated is not None:
        gen_ids, gen_mask = generated
        n_gen = gen_ids.shape[1]
        ids = torch.cat((ids, gen_ids), 1)
        pos_gen = (first[:, None] + torch.arange(n_gen))[None].expand(3, b, n_gen)
        pos_ue = torch.cat((pos_ue, pos_gen), 2)
        am = torch.cat((am, gen_mask), 1)
        vis = torch.cat((vis, torch.zeros_like(gen_mask)), 1)
        blocks = torch.cat((blocks, torch.full_like(gen_ids, -1)), 1)
        first = first + gen_mask.sum(1)
    s = ids.shape[1]

    with torch.no_grad():
        x_ue = lm.embed_tokens(ids)
        feats = hf.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        x_ue[vis] = torch.cat(feats.pooler_output)
        deepstack = [torch.cat(f) for f in feats.deepstack_features]
        # AE tokens in the order the rules ask for, from the AE's own encoders and queries.
        names = ["rgb", "bev", "state", "decision"]
        names += ["route", "waypoints"] if order == "route_first" else ["waypoints", "route"]
        assert [seg.name for seg in ae.segments] == names
        pieces = {
            "rgb": ae.image_tokens(batch.rgb),
            "bev": ae.bev_tokens(batch.bev),
            "state": ae.state_tokens(batch.target_point, batch.ego_state, batch.ego_history),
            "decision": ae.decision_queries.expand(b, -1, -1),
            "waypoints": ae.plan_queries[:6].expand(b, -1, -1),
            "route": ae.plan_queries[6:].expand(b, -1, -1),
        }
        x_ae = torch.cat([pieces[k] for k in names], 1)
        n = x_ae.shape[1]

        # AE positions continue after the last real UE position of each sample.
        pos_ae = (first[:, None] + torch.arange(n))[None].expand(3, b, n)
        cos, sin = lm.rotary_emb(x_ue, torch.cat((pos_ue, pos_ae), dim=2))

        # Hand-written mask over S + L tokens.
        t = s + n
        m = torch.zeros(b, t, t, dtype=torch.bool)
        causal = torch.tril(torch.ones(s, s, dtype=torch.bool))
        same_image = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
        ue_rows = causal | same_image if image_attention == "bidirectional" else causal.expand(b, s, s)
        m[:, :s, :s] = ue_rows & am[:, None, :]
        m[:, torch.arange(s), torch.arange(s)] = True  # padded UE rows see themselves (stay finite)
        m[:, s:, :s] = am[:, None, :]
        task = {"rgb": 1, "bev": 1, "state": 1, "decision": 2, "route": 3, "waypoints": 3}
        lengths = {seg.name: seg.length for seg in ae.segments}
        rank = torch.tensor(
            [(i if cross_modal else task[k]) for i, k in enumerate(names) for _ in range(lengths[k])]
        )
        m[:, s:, s:] = rank[None, :] <= rank[:, None]

        ue_keys, ue_values = [], []
        for layer_idx, (ul, al) in enumerate(zip(lm.layers, ae.layers)):
            ua, aa = ul.self_attn, al.self_attn
            hu, ha = ul.input_layernorm(x_ue), al.input_layernorm(x_ae)
            q = torch.cat(
                (_heads(hu, ua.q_proj, ua.q_norm, hq, d), _heads(ha, aa.q_proj, aa.q_norm, hq, d)), 2
            )
            k = torch.cat(
                (_heads(hu, ua.k_proj, ua.k_norm, hkv, d), _heads(ha, aa.k_proj, aa.k_norm, hkv, d)), 2
            )
            v = torch.cat((_heads(hu, ua.v_proj, None, hkv, d), _heads(ha, aa.v_proj, None, hkv, d)), 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            ue_keys.append(k[:, :, :s])
            ue_values.append(v[:, :, :s])
            rep = hq // hkv
            kk, vv = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            scores = (q @ kk.transpose(-1, -2)) / math.sqrt(d)
            scores = scores.masked_fill(~m[:, None], float("-inf"))
            att = (scores.softmax(-1) @ vv).transpose(1, 2).reshape(b, t, hq * d)
            x_ue = x_ue + ua.o_proj(att[:, :s])
            x_ae = x_ae + aa.o_proj(att[:, s:])
            x_ue = x_ue + ul.mlp(ul.post_attention_layernorm(x_ue))
            x_ae = x_ae + al.mlp(al.post_attention_layernorm(x_ae))
            if layer_idx < len(deepstack):
                x_ue[vis] = x_ue[vis] + deepstack[layer_idx]
        return lm.norm(x_ue), ae.norm(x_ae), ue_keys, ue_values, am


def _check(cache, out, oracle):
    ue_hidden, ae_hidden, keys, values, am = oracle
    assert cache.seq_len == am.shape[1] and torch.equal(cache.mask, am)
    torch.testing.assert_close(out.latents, ae_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(cache.hidden[am], ue_hidden[am], atol=1e-5, rtol=0)
    for layer_idx in range(cache.num_layers):
        valid = am[:, None, :, None].expand_as(keys[layer_idx])
        torch.testing.assert_close(cache.keys[layer_idx][valid], keys[layer_idx][valid], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            cache.values[layer_idx][valid], values[layer_idx][valid], atol=1e-5, rtol=0
        )


# Different prompt lengths: the shorter sample is left-padded, so offsets and padding matter.
PROMPTS = ("turn left at the junction ahead and then stop", "go")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_cached_joint_attention_equals_single_masked_pass(tiny_backbone, variant):
    bb = _variant_backbone(tiny_backbone, variant)
    batch = make_batch(2, t=2, v=2, seed=3, prompts=PROMPTS)
    cache = bb.prefill(batch)
    with torch.no_grad():
        out = bb.act(batch, cache)
    oracle = _oracle(bb, batch)
    assert not bool(oracle[-1].all()), "the batch must contain padding for this test to cover it"
    _check(cache, out, oracle)


def test_mask_variants_differ_where_the_rules_say(tiny_backbone):
    """Sanity of the oracle itself: the two UE masks give different image-token keys."""
    batch = make_batch(2, t=2, v=2, seed=3, prompts=PROMPTS)
    a = _variant_backbone(tiny_backbone, "reference").prefill(batch)
    b = _variant_backbone(tiny_backbone, "figure3").prefill(batch)
    assert (a.keys[-1] - b.keys[-1]).abs().max() > 1e-3


def test_reasoning_tokens_in_the_cache_equal_one_pass_over_prompt_and_text(tiny_backbone):
    """Incremental decoding (KV appended token by token) equals one masked pass over the prompt plus
    the generated tokens; an early end-of-turn in one sample leaves padding that nobody sees."""
    bb = _variant_backbone(tiny_backbone, "reference")
    batch = make_batch(2, t=2, v=2, seed=3, prompts=PROMPTS)
    config = ReasoningConfig(max_new_tokens=6)

    def decode(ue, eos):
        inputs = ue.encode(batch)
        with torch.no_grad():
            pre = ue._model.model(
                **{k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids", "pixel_values")},
                image_grid_thw=inputs["image_grid_thw"],
                mm_token_type_ids=inputs["mm_token_type_ids"],
                use_cache=True,
            )
        mask = inputs["padding_mask"].bool()
        offset = (inputs["position_ids"].masked_fill(~mask[None], -1).amax(dim=(0, 2)) + 1).long()
        gen = generate_reasoning(
            ue._model, output_cache(pre), pre.last_hidden_state[:, -1], mask, offset, config,
            seed=0, eos_token_id=eos, pad_token_id=ue.processor.tokenizer.pad_token_id,
        )  # fmt: skip
        return gen, mask.shape[1]

    # Make sample 1 end early: its third greedy token becomes the end-of-turn token.
    free, _ = decode(bb.ue, eos=-1)
    stop = int(free.token_ids[1, 2])
    assert stop not in free.token_ids[0, :4].tolist() + free.token_ids[1, :2].tolist()
    processor = copy.deepcopy(bb.ue.processor)
    processor.tokenizer.eos_token = processor.tokenizer.convert_ids_to_tokens(stop)
    ue = FrozenQwen3VLExpert(bb.ue._model, processor, image_attention="bidirectional")
    bb = MoTBackbone(ue, bb.ae)
    gen, s_prompt = decode(ue, eos=stop)
    assert gen.mask[0].all() and gen.mask[1].tolist() == [True] * 3 + [False] * 3
    cache = bb.ue.prefill(batch, reasoning=config)
    assert torch.equal(cache.reasoning_mask[:, s_prompt:], gen.mask)
    assert cache.num_generated.tolist() == [6, 3]
    with torch.no_grad():
        out = bb.act(batch, cache)
    _check(cache, out, _oracle(bb, batch, generated=(gen.token_ids, gen.mask)))


def test_ae_rope_equals_qwen_mrope_for_text_like_positions(tiny_backbone):
    """The AE's plain RoPE equals Qwen's interleaved M-RoPE when the 3 components are equal."""
    from mot.layers import rope_cos_sin, rope_inv_freq

    bb = tiny_backbone
    lm = bb.ue._model.model.language_model
    pos = torch.arange(3, 40).view(1, -1)
    cos_q, sin_q = lm.rotary_emb(torch.zeros(1, 1, 1), pos[None].expand(3, 1, -1))
    g = bb.ue.geometry
    cos, sin = rope_cos_sin(pos, rope_inv_freq(g.head_dim, g.rope_theta))
    torch.testing.assert_close(cos, cos_q, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, sin_q, atol=1e-6, rtol=0)
