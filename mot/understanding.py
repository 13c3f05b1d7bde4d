"""The understanding expert (UE, paper section 3.1): a frozen Qwen3-VL behind a small interface.

Axes: B batch, T history frames, V camera views, S UE tokens, L layers, Hkv KV heads, d head width.

The UE sees the multi-frame, multi-view RGB history plus a text prompt. `prefill` runs it once and
returns a `UECache` (per-layer keys/values, final hidden states, padding mask, rotary offset);
`generate` produces chain-of-thought text. Both run under `torch.no_grad()` on a model that is in
eval mode with every parameter frozen.

Freezing cannot be undone by accident: the wrapper is not an `nn.Module` (its weights never appear
in an optimizer built from the action expert's `parameters()`), the wrapped model refuses
`train(True)` and `requires_grad_(True)`, and every call re-checks that no parameter was switched
back to `requires_grad=True`. The UE scene-pretraining stage trains the raw model from
`mot.qwen_offline.build_raw_qwen3vl` instead and hands the saved folder to `from_pretrained`.
"""

from __future__ import annotations

import os
import threading
import types
from typing import Protocol, runtime_checkable

import torch

from automot.types import SensorBatch
from mot.cache import UECache
from mot.config import QwenUEConfig, UEGeometry

VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"


@runtime_checkable
class UnderstandingExpert(Protocol):
    """What the backbone and the fast-slow runtime need from a UE."""

    @property
    def geometry(self) -> UEGeometry: ...

    def prefill(self, batch: SensorBatch, *, step: int = 0, time_s: float = 0.0) -> UECache: ...


def ue_prompt_text(prompt: str, num_frames: int, num_views: int, system_prompt: str) -> str:
    """The UE's input text in Qwen's chat format: one vision block per (frame, view), frame-major."""
    vision = VISION_BLOCK * (num_frames * num_views)
    return (
        f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
        f"<|im_start|>user\n{vision}{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )


class FrozenQwen3VLExpert:
    """A frozen `Qwen3VLForConditionalGeneration` + processor implementing `UnderstandingExpert`."""

    def __init__(self, model, processor, *, system_prompt: str = QwenUEConfig.system_prompt) -> None:
        text_cfg = model.config.text_config
        rope = dict(text_cfg.rope_parameters or {})
        if rope.get("rope_type", "default") != "default":
            raise ValueError(
                f"Qwen3-VL text rope_type: expected 'default' (the AE continues plain rotary positions), "
                f"got {rope.get('rope_type')!r}"
            )
        self._model = _freeze(model)
        self._params = list(model.parameters())
        self._modules = list(model.modules())
        self.processor = processor
        self.system_prompt = system_prompt
        self._geometry = UEGeometry(
            num_layers=text_cfg.num_hidden_layers,
            num_kv_heads=text_cfg.num_key_value_heads,
            head_dim=text_cfg.head_dim,
            hidden_size=text_cfg.hidden_size,
            num_attention_heads=text_cfg.num_attention_heads,
            rope_theta=float(rope["rope_theta"]),
        )
        # HF's generate() stores rope deltas on the model; one generate at a time.
        self._generate_lock = threading.Lock()
        self.prefill_calls = 0

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: QwenUEConfig, *, device: torch.device | str = "cpu") -> FrozenQwen3VLExpert:
        """Load `config.checkpoint`, or build the in-code geometry with random (seeded) weights."""
        if config.checkpoint is not None:
            return cls.from_pretrained(config.checkpoint, device=device, system_prompt=config.system_prompt)
        from mot.qwen_offline import build_raw_qwen3vl

        model, processor = build_raw_qwen3vl(config, device=device)
        return cls(model, processor, system_prompt=config.system_prompt)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        system_prompt: str = QwenUEConfig.system_prompt,
    ) -> FrozenQwen3VLExpert:
        """Load a local HF Qwen3-VL folder (real checkpoint or `save_qwen3vl` output): safetensors only."""
        from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

        path = str(path)
        if not os.path.isdir(path):
            raise ValueError(f"UE checkpoint: expected a local directory, got {path!r}")
        from mot.qwen_offline import quiet_hf_progress

        with quiet_hf_progress():
            model = Qwen3VLForConditionalGeneration.from_pretrained(
                path, local_files_only=True, use_safetensors=True, dtype=dtype
            ).to(device)
        processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        return cls(model, processor, system_prompt=system_prompt)

    # -- properties ---------------------------------------------------------------------------
    @property
    def geometry(self) -> UEGeometry:
        return self._geometry

    @property
    def device(self) -> torch.device:
        return self._params[0].device

    @property
    def hf_config(self):
        return self._model.config

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> FrozenQwen3VLExpert:
        """Move the frozen model (e.g. onto a training process's GPU); it stays frozen."""
        self._model.to(device=device, dtype=dtype)
        self._check_frozen()
        return self

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self._params)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A read-only view for saving/comparing; the tensors are the frozen weights (do not edit)."""
        return self._model.state_dict()

    # -- inference ----------------------------------------------------------------------------
    def encode(self, batch: SensorBatch) -> dict[str, torch.Tensor]:
        """Processor outputs plus M-RoPE `position_ids` (3, B, S) for `batch`'s history and prompts."""
        batch.validate()
        b, t, v = batch.rgb_history.shape[:3]
        texts = [ue_prompt_text(p, t, v, self.system_prompt) for p in batch.prompts]
        # Frame-major, view-minor, sample by sample: the order of the vision blocks in the text.
        images = list(batch.rgb_history.reshape(b * t * v, *batch.rgb_history.shape[3:]).cpu())
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        inputs = {k: val.to(self.device) for k, val in inputs.items()}
        # Computed here (pure function) instead of inside forward, which would store rope deltas
        # on the shared model and race with a concurrent generate().
        position_ids, _ = self._model.model.get_rope_index(
            inputs["input_ids"],
            inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"],
            attention_mask=inputs["attention_mask"],
        )
        inputs["position_ids"] = position_ids
        return inputs

    def prefill(self, batch: SensorBatch, *, step: int = 0, time_s: float = 0.0) -> UECache:
        """Run the UE once over the history + prompt and keep its per-layer keys/values.

        batch.rgb_history (B, T, V, 3, H, W) uint8, batch.prompts B strings ->
        UECache(keys/values L x (B, Hkv, S, d), hidden (B, S, D_ue), mask (B, S), offset (B,)).
        """
        self._check_frozen()
        inputs = self.encode(batch)
        with torch.no_grad():
            out = self._model.model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                position_ids=inputs["position_ids"],
                pixel_values=inputs["pixel_values"],
                image_grid_thw=inputs["image_grid_thw"],
                mm_token_type_ids=inputs["mm_token_type_ids"],
                use_cache=True,
            )
        mask = inputs["attention_mask"].bool()
        valid = mask[:, None, :, None]
        # transformers >= 5.24 names the cache `cache` (reading `past_key_values` logs a deprecation).
        pkv = out.get("cache") if out.get("cache") is not None else out.past_key_values
        keys = tuple(torch.where(valid, layer.keys, 0.0) for layer in pkv.layers)
        values = tuple(torch.where(valid, layer.values, 0.0) for layer in pkv.layers)
        hidden = torch.where(mask[..., None], out.last_hidden_state, 0.0)
        # Next rotary position after the last real token (text positions equal their M-RoPE index).
        pos = inputs["position_ids"].masked_fill(~mask[None], -1)
        offset = pos.amax(dim=(0, 2)) + 1
        self.prefill_calls += 1
        return UECache(
            keys=keys,
            values=values,
            hidden=hidden,
            mask=mask,
            position_offset=offset.long(),
            step=int(step),
            time_s=float(time_s),
        ).validate(self._geometry)

    def generate(self, batch: SensorBatch, *, max_new_tokens: int = 32) -> list[str]:
        """Chain-of-thought text for each sample (greedy decoding), special tokens removed."""
        self._check_frozen()
        inputs = self.encode(batch)
        inputs.pop("position_ids")  # generate() builds its own incremental M-RoPE positions
        tok = self.processor.tokenizer
        with self._generate_lock, torch.no_grad():
            out = self._model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        return [s.strip() for s in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]

    def _check_frozen(self) -> None:
        if any(m.training for m in self._modules) or any(p.requires_grad for p in self._params):
            raise RuntimeError(
                "FrozenQwen3VLExpert: the understanding expert was unfrozen (training mode or requires_grad "
                "set on a parameter); it must stay frozen. Train the raw model from build_raw_qwen3vl instead."
            )


def ue_geometry(config: QwenUEConfig) -> UEGeometry:
    """The UE geometry of `config`, reading `config.json` of a checkpoint when one is given."""
    if config.checkpoint is None:
        return config.geometry()
    from transformers import Qwen3VLConfig

    text = Qwen3VLConfig.from_pretrained(config.checkpoint, local_files_only=True).text_config
    return UEGeometry(
        num_layers=text.num_hidden_layers,
        num_kv_heads=text.num_key_value_heads,
        head_dim=text.head_dim,
        hidden_size=text.hidden_size,
        num_attention_heads=text.num_attention_heads,
        rope_theta=float(text.rope_parameters["rope_theta"]),
    )


def _freeze(model):
    """Eval mode, no gradients, and `train(True)` / `requires_grad_(True)` raise from now on."""
    model.requires_grad_(False)
    model.eval()

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(
                "the understanding expert is frozen: train(True) is refused. Fine-tune the raw model from "
                "mot.qwen_offline.build_raw_qwen3vl and load it with FrozenQwen3VLExpert.from_pretrained."
            )
        return torch.nn.Module.train(self, False)

    def requires_grad_(self, requires_grad: bool = True):
        if requires_grad:
            raise RuntimeError("the understanding expert is frozen: requires_grad_(True) is refused")
        return torch.nn.Module.requires_grad_(self, False)

    model.train = types.MethodType(train, model)
    model.requires_grad_ = types.MethodType(requires_grad_, model)
    return model
