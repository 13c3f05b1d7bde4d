"""Chain-of-thought in the cache: greedy decoding equals HF's generate, the cache grows by the generated
tokens, the AE attends to them (and never writes into the cache), sampling is reproducible by seed,
and the planner returns the text with the plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automot.types import EpisodeInfo
from mot import FastSlowPlanner, FrozenQwen3VLExpert, MoTBackbone
from mot.config import ReasoningConfig
from tests.mot._support import make_batch, make_observation


def _ue(tiny_backbone, image_attention="bidirectional", **reasoning):
    base = tiny_backbone.ue
    return FrozenQwen3VLExpert(
        base._model, base.processor, image_attention=image_attention, reasoning=ReasoningConfig(**reasoning)
    )


def _snapshot(cache):
    return [t.clone() for t in (*cache.keys, *cache.values, cache.hidden, cache.mask, cache.reasoning_mask)]


def test_greedy_reasoning_is_what_hf_generate_decodes(tiny_backbone):
    """Independent reference: HF's own generate() (causal prompt mask, its own cache handling)."""
    ue = _ue(tiny_backbone, image_attention="causal")
    batch = make_batch(2, seed=1, prompts=("turn left at the junction ahead", "go"))
    inputs = ue.encode(batch)
    inputs.pop("position_ids")
    inputs["attention_mask"] = inputs.pop("padding_mask")
    tok = ue.processor.tokenizer
    with torch.no_grad():
        ref = ue._model.generate(
            **inputs,
            max_new_tokens=7,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
    want = [
        s.strip()
        for s in ue.processor.batch_decode(ref[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    ]
    assert ue.generate(batch, max_new_tokens=7) == want
    assert all(want)


def test_cache_grows_by_the_generated_tokens_and_keeps_the_prompt(tiny_backbone):
    batch = make_batch(2, seed=2)
    plain = _ue(tiny_backbone).prefill(batch)
    cache = _ue(tiny_backbone, max_new_tokens=5).prefill(batch)
    n = cache.num_generated
    assert plain.reasoning_mask is None and plain.reasoning_text is None
    assert cache.seq_len == plain.seq_len + int(n.max()) and bool((n >= 1).all())
    assert torch.equal(cache.position_offset, plain.position_offset + n)
    assert torch.equal(cache.mask[:, : plain.seq_len], plain.mask)
    assert torch.equal(cache.reasoning_mask.sum(1), n) and not cache.reasoning_mask[:, : plain.seq_len].any()
    for a, b in zip((*plain.keys, *plain.values), (*cache.keys, *cache.values)):
        torch.testing.assert_close(
            b[:, :, : plain.seq_len], a, atol=1e-6, rtol=0
        )  # the prompt part is unchanged
    assert len(cache.reasoning_text) == 2 and all(isinstance(t, str) and t for t in cache.reasoning_text)
    # split/stack keep the reasoning with its sample.
    parts = cache.split()
    assert [p.reasoning_text for p in parts] == [(t,) for t in cache.reasoning_text]
    again = type(cache).stack(parts[::-1])
    assert again.reasoning_text == cache.reasoning_text[::-1]
    assert torch.equal(again.num_generated, n.flip(0))


def test_ae_attends_to_the_generated_tokens_and_never_writes_into_the_cache(tiny_backbone):
    batch = make_batch(2, seed=4)
    sampled = _ue(tiny_backbone, max_new_tokens=6, sampling="sample", temperature=1.5)
    a, b = sampled.prefill(batch, seed=1), sampled.prefill(batch, seed=2)
    assert a.reasoning_text != b.reasoning_text
    plain_len = int((~a.reasoning_mask).sum(1).max())  # the prompt part is shared by a and b
    for x, y in zip(a.keys, b.keys):
        assert torch.equal(x[:, :, :plain_len], y[:, :, :plain_len])
    ae = tiny_backbone.ae
    before = _snapshot(a)
    with torch.no_grad():
        out_a, out_b = ae(batch, a), ae(batch, b)
    assert all(torch.equal(x, y) for x, y in zip(before, _snapshot(a)))  # nothing written into the cache
    assert not any(t.requires_grad for t in (*a.keys, *a.values, a.hidden))
    assert (out_a.latents - out_b.latents).abs().max() > 1e-4  # other reasoning, other plan
    assert out_a.reasoning == a.reasoning_text
    # The head's reasoning tokens are the generated tokens' hidden states.
    assert torch.equal(out_a.context.reasoning_mask, a.reasoning_mask)
    assert torch.equal(out_a.context.reasoning_tokens, a.hidden)


def test_same_seed_same_text_and_greedy_ignores_the_seed(tiny_backbone):
    batch = make_batch(2, seed=5)
    sampled = _ue(tiny_backbone, max_new_tokens=6, sampling="sample", top_k=20)
    texts = {sampled.prefill(batch, seed=s).reasoning_text for s in range(4)}
    assert len(texts) > 1
    assert sampled.prefill(batch, seed=3).reasoning_text == sampled.prefill(batch, seed=3).reasoning_text
    greedy = _ue(tiny_backbone, max_new_tokens=6)
    assert greedy.prefill(batch, seed=1).reasoning_text == greedy.prefill(batch, seed=2).reasoning_text


def test_planner_returns_the_text_with_the_plan_reproducibly(tiny_backbone):
    """The refresh at step n samples with a seed of (planner seed, episode seed, n) only: sync and
    background runs give the same text, another planner seed another one."""
    ue = _ue(tiny_backbone, max_new_tokens=4, sampling="sample")
    bb = MoTBackbone(ue, tiny_backbone.ae)

    def run(mode, seed):
        with FastSlowPlanner(bb, refresh_every=2, mode=mode, seed=seed) as planner:
            planner.reset(EpisodeInfo(scenario="s", seed=3))
            outs = []
            for i in range(4):
                outs.append(planner.plan(make_observation(i)))
                planner.wait_idle(30)  # background: each refresh lands before the next step
        return outs

    sync = run("sync", 0)
    texts = [o.reasoning for o in sync]
    assert all(isinstance(t, str) and t for t in texts) and texts[0] == texts[1] and texts[2] == texts[3]
    assert texts == [o.reasoning for o in run("sync", 0)]
    background = run("background", 0)
    for i, o in enumerate(background):  # the text of the cache that step used (sync step i - age)
        assert o.reasoning == texts[i - o.info["cache_age_steps"]]
    assert background[3].info["cache_age_steps"] == 1  # step 3 used the refresh of step 2
    assert [o.reasoning for o in run("sync", 1)] != texts
    # Same cache content up to float summation order (the worker thread runs its own thread count).
    np.testing.assert_allclose(background[0].waypoints, sync[0].waypoints, atol=1e-4, rtol=0)


def test_reasoning_config_validation():
    with pytest.raises(ValueError, match="max_new_tokens"):
        ReasoningConfig(max_new_tokens=-1)
    with pytest.raises(ValueError, match="sampling"):
        ReasoningConfig(sampling="beam")
    with pytest.raises(ValueError, match="temperature"):
        ReasoningConfig(temperature=0.0)
    from mot import QwenUEConfig

    with pytest.raises(ValueError, match=r"reasoning: unknown fields \['beams'\]"):
        QwenUEConfig(reasoning={"beams": 2})
    assert QwenUEConfig(reasoning={"max_new_tokens": 3}).reasoning.enabled
