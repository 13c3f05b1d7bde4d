"""Oracle: the AE against the cached UE keys/values equals ONE masked attention pass per layer over the
concatenated [UE ; AE] sequence, built here independently from the raw weights (paper eqs. 3-5).

The oracle runs both experts layer by layer itself: UE tokens through the Qwen3-VL layer weights
(embeddings, image features scattered into the placeholders, DeepStack additions), AE tokens through
the AE's weights, q/k/v of both concatenated, M-RoPE from Qwen's own rotary module over the whole
sequence, and one explicit softmax attention under a hand-written mask. Nothing of the AE's cached
path (SDPA, its RoPE, its mask builder, the cache) is used.
"""

from __future__ import annotations

import math

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb

from tests.mot._support import make_batch


def _heads(x, proj, norm, n_heads, head_dim):
    b, s, _ = x.shape
    h = proj(x).view(b, s, n_heads, head_dim)
    return (norm(h) if norm is not None else h).transpose(1, 2)


def _oracle(bb, batch):
    ue, ae = bb.ue, bb.ae
    hf = ue._model
    lm = hf.model.language_model
    inputs = ue.encode(batch)
    ids, am = inputs["input_ids"], inputs["attention_mask"].bool()
    pos_ue = inputs["position_ids"]  # (3, B, S) M-RoPE ids from Qwen's get_rope_index
    b, s = ids.shape
    g = ue.geometry
    d, hkv = g.head_dim, g.num_kv_heads
    hq = g.num_attention_heads
    assert ae.num_heads == hq, "the oracle concatenates queries: use equal head counts"

    with torch.no_grad():
        x_ue = lm.embed_tokens(ids)
        feats = hf.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        vis = ids == hf.config.image_token_id
        x_ue[vis] = torch.cat(feats.pooler_output)
        deepstack = [torch.cat(f) for f in feats.deepstack_features]
        x_ae = ae.embed(batch)
        n = x_ae.shape[1]

        # AE positions continue after the last real UE position of each sample.
        first = torch.stack([pos_ue[:, i, am[i]].max() + 1 for i in range(b)])
        pos_ae = (first[:, None] + torch.arange(n))[None].expand(3, b, n)
        cos, sin = lm.rotary_emb(x_ue, torch.cat((pos_ue, pos_ae), dim=2))

        # Hand-written mask over S + L tokens.
        t = s + n
        m = torch.zeros(b, t, t, dtype=torch.bool)
        m[:, :s, :s] = torch.tril(torch.ones(s, s, dtype=torch.bool)) & am[:, None, :]
        m[:, torch.arange(s), torch.arange(s)] = True  # padded UE rows see themselves (stay finite)
        m[:, s:, :s] = am[:, None, :]
        seg = {x.name: x.length for x in ae.segments}
        rank = torch.tensor(
            [1] * (seg["rgb"] + seg["bev"] + seg["state"])
            + [2] * seg["decision"]
            + [3] * (seg["waypoints"] + seg["route"])
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


def test_cached_joint_attention_equals_single_masked_pass(tiny_backbone):
    bb = tiny_backbone
    # Different prompt lengths: the shorter sample is left-padded, so offsets and padding matter.
    batch = make_batch(2, t=2, v=2, seed=3, prompts=("turn left at the junction ahead and then stop", "go"))
    cache = bb.prefill(batch)
    with torch.no_grad():
        out = bb.act(batch, cache)
    ue_hidden, ae_hidden, keys, values, am = _oracle(bb, batch)
    assert not bool(am.all()), "the batch must contain padding for this test to cover it"

    torch.testing.assert_close(out.latents, ae_hidden, atol=1e-5, rtol=0)
    torch.testing.assert_close(cache.hidden[am], ue_hidden[am], atol=1e-5, rtol=0)
    for layer_idx in range(cache.num_layers):
        valid = am[:, None, :, None].expand_as(keys[layer_idx])
        torch.testing.assert_close(cache.keys[layer_idx][valid], keys[layer_idx][valid], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            cache.values[layer_idx][valid], values[layer_idx][valid], atol=1e-5, rtol=0
        )


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
