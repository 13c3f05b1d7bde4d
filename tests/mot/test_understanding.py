"""The frozen Qwen3-VL understanding expert: frozen for real, cache contents, save/reload, generation."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mot import FrozenQwen3VLExpert, QwenUEConfig, build_raw_qwen3vl, save_qwen3vl, ue_geometry
from mot.decision import decision_nll
from mot.reasoning import output_cache
from tests.mot._support import make_batch


def _caches_equal(a, b) -> None:
    assert a.seq_len == b.seq_len and torch.equal(a.mask, b.mask)
    assert torch.equal(a.position_offset, b.position_offset)
    for x, y in zip((*a.keys, *a.values, a.hidden), (*b.keys, *b.values, b.hidden)):
        assert torch.equal(x, y)


def test_saved_and_reloaded_ue_gives_identical_caches(tmp_path: Path, batch):
    config = QwenUEConfig(seed=7)
    model, processor = build_raw_qwen3vl(config)
    # Stand-in for the UE scene-pretraining stage: the raw model is trainable and gets updated.
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        model.lm_head.weight.mul_(1.5)
    folder = save_qwen3vl(model, processor, tmp_path / "ue")
    files = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))], files

    original = FrozenQwen3VLExpert(copy.deepcopy(model), processor)
    reloaded = FrozenQwen3VLExpert.from_pretrained(folder)
    _caches_equal(original.prefill(batch), reloaded.prefill(batch))
    assert reloaded.generate(batch, max_new_tokens=5) == original.generate(batch, max_new_tokens=5)
    assert ue_geometry(QwenUEConfig(checkpoint=str(folder))) == original.geometry
    # The same seed builds the same weights; another seed does not.
    again = FrozenQwen3VLExpert.from_config(QwenUEConfig(seed=7))
    other = FrozenQwen3VLExpert.from_config(QwenUEConfig(seed=8))
    assert torch.equal(
        again.prefill(batch).hidden,
        FrozenQwen3VLExpert(build_raw_qwen3vl(config)[0], processor).prefill(batch).hidden,
    )
    assert not torch.equal(again.prefill(batch).hidden, other.prefill(batch).hidden)


def test_ue_cannot_be_unfrozen_by_accident(tiny_backbone, batch):
    ue = tiny_backbone.ue
    assert not isinstance(ue, torch.nn.Module)
    ae_params = {id(p) for p in tiny_backbone.ae.parameters()}
    assert not ae_params & {id(p) for p in ue._params}
    assert not any(k.startswith(("model.", "lm_head")) for k in tiny_backbone.ae.state_dict())
    with pytest.raises(RuntimeError, match="frozen"):
        ue._model.train()
    with pytest.raises(RuntimeError, match="frozen"):
        ue._model.requires_grad_(True)
    ue._model.eval()  # allowed

    # Reaching inside and flipping a flag is caught at the next call.
    p = ue._params[0]
    p.requires_grad_(True)
    try:
        with pytest.raises(RuntimeError, match="unfrozen"):
            ue.prefill(batch)
    finally:
        p.requires_grad_(False)
    sub = ue._model.model.visual
    torch.nn.Module.train(sub, True)
    try:
        with pytest.raises(RuntimeError, match="unfrozen"):
            ue.prefill(batch)
    finally:
        torch.nn.Module.train(sub, False)


def test_training_the_ae_leaves_the_ue_untouched(tiny_backbone, batch):
    ae = copy.deepcopy(tiny_backbone.ae).train()
    cache = tiny_backbone.prefill(batch)
    assert not any(t.requires_grad for t in (*cache.keys, *cache.values, cache.hidden))
    out = ae(batch, cache)
    target = torch.zeros(batch.batch_size, 3, dtype=torch.long)
    loss = decision_nll(out.lateral_logits, out.longitudinal_logits, target, target)["loss"]
    loss = loss + out.plan.waypoints.abs().mean()
    loss.backward()
    assert all(p.grad is None for p in tiny_backbone.ue._params)
    grads = [p.grad for p in ae.layers.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_cache_matches_hf_default_forward_and_layout(tiny_backbone, batch):
    """With causal image attention (Qwen as pretrained), our explicit M-RoPE ids and 4-D mask give
    the same keys as HF's own forward computing positions and the causal mask itself."""
    ue = FrozenQwen3VLExpert(tiny_backbone.ue._model, tiny_backbone.ue.processor, image_attention="causal")
    cache = ue.prefill(batch)
    g = ue.geometry
    assert cache.num_layers == g.num_layers
    assert cache.keys[0].shape == (batch.batch_size, g.num_kv_heads, cache.seq_len, g.head_dim)
    assert cache.hidden.shape == (batch.batch_size, cache.seq_len, g.hidden_size)
    inputs = ue.encode(batch)
    inputs.pop("position_ids")
    inputs["attention_mask"] = inputs.pop("padding_mask")
    hf = ue._model
    hf.model.rope_deltas = None
    with torch.no_grad():
        ref = hf.model(**inputs, use_cache=True)
    m = cache.mask
    for layer_idx, layer in enumerate(output_cache(ref).layers):
        valid = m[:, None, :, None].expand_as(layer.keys)
        assert torch.equal(cache.keys[layer_idx][valid], layer.keys[valid])
        assert torch.equal(cache.values[layer_idx][valid], layer.values[valid])
        assert not bool(cache.keys[layer_idx][~valid].any())  # padding zeroed
    assert torch.equal(cache.hidden[m], ref.last_hidden_state[m])
    # Vision tokens: T x V images of 32 x 32 with patch 8, merge 2 -> 4 tokens each.
    image_tokens = (inputs["input_ids"] == hf.config.image_token_id).sum(dim=1)
    t, v = batch.rgb_history.shape[1:3]
    assert image_tokens.tolist() == [t * v * 4] * batch.batch_size


def test_step_and_time_are_recorded_and_inputs_validated(tiny_backbone, batch):
    cache = tiny_backbone.prefill(batch, step=12, time_s=2.4)
    assert (cache.step, cache.time_s) == (12, 2.4)
    with pytest.raises(ValueError, match="prompts"):
        tiny_backbone.prefill(replace(batch, prompts=["only one"]))
    with pytest.raises(ValueError, match="rgb_history"):
        tiny_backbone.prefill(replace(batch, rgb_history=batch.rgb_history.float()))


def test_generate_is_greedy_and_deterministic(tiny_backbone):
    b = make_batch(2, seed=1)
    texts = tiny_backbone.ue.generate(b, max_new_tokens=6)
    assert len(texts) == 2 and all(isinstance(s, str) for s in texts)
    assert texts == tiny_backbone.ue.generate(b, max_new_tokens=6)
    assert all(len(s.split()) <= 6 for s in texts)


def test_ue_config_validation_names_the_field():
    with pytest.raises(ValueError, match="mrope_section"):
        QwenUEConfig(mrope_section=(4, 4, 4))
    with pytest.raises(ValueError, match="num_position_embeddings"):
        QwenUEConfig(num_position_embeddings=15)
    with pytest.raises(ValueError, match="num_attention_heads"):
        QwenUEConfig(num_attention_heads=3)
    with pytest.raises(ValueError, match="deepstack_visual_indexes"):
        QwenUEConfig(deepstack_visual_indexes=(5,))
    with pytest.raises(ValueError, match="local directory"):
        FrozenQwen3VLExpert.from_pretrained("/nonexistent/qwen")


def test_offline_tokenizer_knows_every_word_the_world_speaks():
    """Scene pretraining must never see [UNK]: every world word is one known token."""
    from automot.vocabulary import WORLD_VOCABULARY
    from mot.qwen_offline import UNK_TOKEN, build_offline_tokenizer

    tok = build_offline_tokenizer()
    unk = tok.convert_tokens_to_ids(UNK_TOKEN)
    text = " ".join(WORLD_VOCABULARY)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(WORLD_VOCABULARY) and unk not in ids
    assert tok.convert_ids_to_tokens(ids) == list(WORLD_VOCABULARY)
