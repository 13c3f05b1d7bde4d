"""Chain-of-thought in the slow loop (paper sections 3.1 and 3.3): the UE keeps decoding after the
prompt, and every generated token's keys/values stay in the KV cache the action expert attends to.

Axes: B batch, S prompt tokens, N generated tokens, D_ue UE width, V vocabulary.

The loop is written out (not HF `generate`) because the AE needs what `generate` throws away: the
per-layer keys/values of every generated token (they land in the same `DynamicCache` the prompt
filled) and each token's final hidden state (the planning head's reasoning tokens). Positions
continue after the prompt's last M-RoPE position with equal (t, h, w) components, as Qwen3-VL
decodes text. A sample that emitted end-of-turn stops: its later columns are padding (mask False)
while the other samples keep decoding. Reasoning is language, so it is causal: each token sees the
whole prompt and the tokens generated before it, which is exactly what incremental decoding computes.

Greedy decoding is deterministic; sampled decoding draws from a `torch.Generator` seeded with the
`seed` argument, so the same seed gives the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mot.config import ReasoningConfig


@dataclass(frozen=True)
class Generated:
    """token_ids (B, N) long, mask (B, N) bool (True = a real generated token, end-of-turn
    included), hidden (B, N, D_ue) final normed hidden states (zero where mask is False)."""

    token_ids: torch.Tensor
    mask: torch.Tensor
    hidden: torch.Tensor


def next_token(
    logits: torch.Tensor, config: ReasoningConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """logits (B, V) -> token ids (B,): arg-max, or a draw from softmax(logits / T) over the top k."""
    if config.sampling == "greedy":
        return logits.argmax(-1)
    logits = logits.float() / config.temperature
    if config.top_k is not None and config.top_k < logits.shape[-1]:
        kth = logits.topk(config.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _cache_argument(module) -> str:
    """transformers renamed `past_key_values` to `cache` (deprecated in 5.x); use what this version has."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def output_cache(out):
    """The `DynamicCache` of a model output (`out.cache`, or `past_key_values` before the rename)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def generate_reasoning(
    model,
    cache,
    last_hidden: torch.Tensor,
    prompt_mask: torch.Tensor,
    offset: torch.Tensor,
    config: ReasoningConfig,
    *,
    seed: int,
    eos_token_id: int,
    pad_token_id: int,
) -> Generated:
    """Decode up to `config.max_new_tokens` tokens after the prompt, appending to `cache` in place.

    model: `Qwen3VLForConditionalGeneration` (frozen); cache: the prompt's `DynamicCache`;
    last_hidden (B, D_ue): final hidden state of each sample's last prompt token; prompt_mask (B, S)
    bool; offset (B,) long: the first rotary position after each prompt.
    """
    b = last_hidden.shape[0]
    dev = last_hidden.device
    generator = None
    if config.sampling == "sample":
        generator = torch.Generator(device=dev).manual_seed(int(seed))
    alive = torch.ones(b, dtype=torch.bool, device=dev)
    attention = prompt_mask.long()
    h = last_hidden
    ids, valid, hidden = [], [], []
    cache_kw = _cache_argument(model.model)
    with torch.no_grad():
        for i in range(config.max_new_tokens):
            token = next_token(model.lm_head(h), config, generator)
            token = torch.where(alive, token, torch.full_like(token, pad_token_id))
            attention = torch.cat((attention, alive[:, None].long()), dim=1)
            position = (offset + i).view(1, b, 1).expand(3, b, 1)
            out = model.model(
                input_ids=token[:, None],
                attention_mask=attention,
                position_ids=position,
                **{cache_kw: cache},
                mm_token_type_ids=torch.zeros(b, 1, dtype=torch.int32, device=dev),
                use_cache=True,
            )
            h = out.last_hidden_state[:, -1]
            ids.append(token)
            valid.append(alive.clone())
            hidden.append(torch.where(alive[:, None], h, 0.0))
            alive = alive & (token != eos_token_id)
            if not bool(alive.any()):
                break
    return Generated(
        token_ids=torch.stack(ids, dim=1), mask=torch.stack(valid, dim=1), hidden=torch.stack(hidden, dim=1)
    )
