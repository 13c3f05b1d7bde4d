"""The understanding expert (UE, paper section 3.1): a frozen Qwen3-VL behind a small interface.

Axes: B batch, T history frames, V camera views, S UE tokens, L layers, Hkv KV heads, d head width.

The UE sees the multi-frame, multi-view RGB history plus a text prompt. `prefill` runs it once and
returns a `UECache` (per-layer keys/values, final hidden states, padding mask, rotary offset). Its
own attention follows `image_attention` (each image block bidirectional, or causal as pretrained;
`mot.mask.ue_attention_mask`). With `ReasoningConfig.max_new_tokens > 0` the slow loop then
generates chain-of-thought after the prompt (`mot.reasoning`): the generated tokens' keys/values
join the cache and their hidden states become the reasoning tokens. Everything runs under
`torch.no_grad()` on a model that is in eval mode with every parameter frozen.

Freezing cannot be undone by accident: the wrapper is not an `nn.Module` (its weights never appear
in an optimizer built from the action expert's `parameters()`), the wrapped model refuses
`train(True)` and `requires_grad_(True)`, and every call re-checks that no parameter was switched
back to `requires_grad=True`. The UE scene-pretraining stage trains the raw model from
`mot.qwen_offline.build_raw_qwen3vl` instead and hands the saved folder to `from_pretrained`.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from automot.checks import check_choice
from automot.types import SensorBatch
from mot.cache import UECache
from mot.config import UE_IMAGE_ATTENTION, QwenUEConfig, ReasoningConfig, UEGeometry
from mot.mask import ue_attention_mask
from mot.reasoning import generate_reasoning, output_cache

VISION_BLOCK = "<|vision_start|><|image_pad|><|vision_end|>"


@runtime_checkable
class UnderstandingExpert(Protocol):
    """What the backbone and the fast-slow runtime need from a UE."""

    @property
    def geometry(self) -> UEGeometry: ...

    def prefill(
        self, batch: SensorBatch, *, step: int = 0, time_s: float = 0.0, seed: int | None = None
    ) -> UECache: ...


def ue_prompt_text(prompt: str, num_frames: int, num_views: int, system_prompt: str) -> str:
    """The UE's input text in Qwen's chat format: one vision block per (frame, view), frame-major."""
    vision = VISION_BLOCK * (num_frames * num_views)
    return (
        f"<|im_start|>system\n{system_prompt}<|im_end|>\n"
        f"<|im_start|>user\n{vision}{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )


def prepare_ue_inputs(
    model, inputs: dict[str, torch.Tensor], image_attention: str
) -> dict[str, torch.Tensor]:
    """Add M-RoPE `position_ids` (3, B, S) and replace the 2-D padding mask by the UE's 4-D additive
    attention mask (B, 1, S, S) under `image_attention`; the 2-D mask stays as `padding_mask`.

    Shared by the frozen UE's prefill and the UE scene-pretraining stage, so the pretrained model is
    trained under the same mask it is used with. HF returns a 4-D mask unchanged.
    """
    inputs = dict(inputs)
    padding = inputs["attention_mask"]
    # Computed here (pure function) instead of inside forward, which would store rope deltas on
    # the shared model and race with a concurrent call.
    position_ids, _ = model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        image_grid_thw=inputs.get("image_grid_thw"),
        attention_mask=padding,
    )
    cfg = model.config
    allowed = ue_attention_mask(
        inputs["input_ids"],
        padding,
        vision_start_id=cfg.vision_start_token_id,
        vision_end_id=cfg.vision_end_token_id,
        image_attention=image_attention,
    )
    dtype = model.model.language_model.embed_tokens.weight.dtype
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    inputs["attention_mask"] = bias.masked_fill(~allowed, torch.finfo(dtype).min)
    inputs["padding_mask"] = padding
    inputs["position_ids"] = position_ids
    return inputs


def _without_paths(settings):
    """A config dict without where it was loaded from (`_name_or_path`): the same weights and
    settings read from two folders are the same expert."""
    if isinstance(settings, dict):
        return {k: _without_paths(v) for k, v in settings.items() if not str(k).endswith("name_or_path")}
    if isinstance(settings, list):
        return [_without_paths(v) for v in settings]
    return settings


class FrozenQwen3VLExpert:
    """A frozen `Qwen3VLForConditionalGeneration` + processor implementing `UnderstandingExpert`."""

    def __init__(
        self,
        model,
        processor,
        *,
        system_prompt: str = QwenUEConfig.system_prompt,
        image_attention: str = QwenUEConfig.image_attention,
        reasoning: ReasoningConfig | None = None,
    ) -> None:
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
        check_choice("FrozenQwen3VLExpert.image_attention", image_attention, UE_IMAGE_ATTENTION)
        self.image_attention = image_attention
        self.reasoning = reasoning if reasoning is not None else ReasoningConfig()
        if not isinstance(self.reasoning, ReasoningConfig):
            raise ValueError(
                f"FrozenQwen3VLExpert.reasoning: expected a ReasoningConfig, got {type(reasoning).__name__}"
            )
        self._geometry = UEGeometry(
            num_layers=text_cfg.num_hidden_layers,
            num_kv_heads=text_cfg.num_key_value_heads,
            head_dim=text_cfg.head_dim,
            hidden_size=text_cfg.hidden_size,
            num_attention_heads=text_cfg.num_attention_heads,
            rope_theta=float(rope["rope_theta"]),
        )
        self.prefill_calls = 0

    def fingerprint(self, runtime: bool = True) -> str:
        """A sha256 of everything a prefill's output depends on besides its input: the weights and
        buffers, the model and processor configs, the prompt format, the image attention, the
        reasoning settings and (with `runtime`) torch's version, this process's thread count (a
        matmul's last bits can depend on how many threads split it) and the device. Two experts with
        the same fingerprint prefill a sample to the same bits; `training.ue_store` names its folders
        by it. `runtime=False`: which expert this is, wherever it runs (a policy's identity)."""
        from automot.digest import state_digest

        processor = self.processor.to_dict() if hasattr(self.processor, "to_dict") else repr(self.processor)
        settings = {
            "model": _without_paths(self._model.config.to_dict()),
            "processor": _without_paths(processor),
            "system_prompt": self.system_prompt,
            "image_attention": self.image_attention,
            "reasoning": repr(self.reasoning),
        }
        if runtime:
            settings.update(torch=torch.__version__, threads=torch.get_num_threads(), device=str(self.device))
        return state_digest(self._model.state_dict(), settings)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: QwenUEConfig, *, device: torch.device | str = "cpu") -> FrozenQwen3VLExpert:
        """Load `config.checkpoint`, or build the in-code geometry with random (seeded) weights."""
        options = dict(
            system_prompt=config.system_prompt,
            image_attention=config.image_attention,
            reasoning=config.reasoning,
        )
        if config.checkpoint is not None:
            return cls.from_pretrained(config.checkpoint, device=device, **options)
        from mot.qwen_offline import build_raw_qwen3vl

        model, processor = build_raw_qwen3vl(config, device=device)
        return cls(model, processor, **options)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        system_prompt: str = QwenUEConfig.system_prompt,
        image_attention: str = QwenUEConfig.image_attention,
        reasoning: ReasoningConfig | None = None,
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
        return cls(
            model,
            processor,
            system_prompt=system_prompt,
            image_attention=image_attention,
            reasoning=reasoning,
        )

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

    def recipe(self) -> UERecipe:
        """What another process needs to rebuild this expert (`UERecipe.build`): the HF config, the
        processor, the options and the weights. Sent to a spawned process, the weight tensors travel
        through shared memory (no copy into a pickle); CPU only."""
        if self.device.type != "cpu":
            raise ValueError(f"FrozenQwen3VLExpert.recipe: expected a CPU model, got device {self.device}")
        return UERecipe(
            hf_config=self._model.config,
            state_dict=self._model.state_dict(),
            processor=self.processor,
            system_prompt=self.system_prompt,
            image_attention=self.image_attention,
            reasoning=self.reasoning,
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self._params)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A read-only view for saving/comparing; the tensors are the frozen weights (do not edit)."""
        return self._model.state_dict()

    # -- inference ----------------------------------------------------------------------------
    def encode(self, batch: SensorBatch) -> dict[str, torch.Tensor]:
        """Processor outputs for `batch`'s history and prompts, plus M-RoPE `position_ids`
        (3, B, S), the 4-D attention mask (B, 1, S, S) of `image_attention` as `attention_mask`
        and the 2-D padding mask (B, S) as `padding_mask` (`prepare_ue_inputs`)."""
        batch.validate()
        b, t, v = batch.rgb_history.shape[:3]
        texts = [ue_prompt_text(p, t, v, self.system_prompt) for p in batch.prompts]
        # Frame-major, view-minor, sample by sample: the order of the vision blocks in the text.
        images = list(batch.rgb_history.reshape(b * t * v, *batch.rgb_history.shape[3:]).cpu())
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True)
        inputs = {k: val.to(self.device) for k, val in inputs.items()}
        return prepare_ue_inputs(self._model, inputs, self.image_attention)

    def prefill(
        self,
        batch: SensorBatch,
        *,
        step: int = 0,
        time_s: float = 0.0,
        seed: int | None = None,
        reasoning: ReasoningConfig | None = None,
    ) -> UECache:
        """Run the UE once over the history + prompt (and its reasoning, if enabled) and keep its
        per-layer keys/values.

        batch.rgb_history (B, T, V, 3, H, W) uint8, batch.prompts B strings ->
        UECache(keys/values L x (B, Hkv, S, d), hidden (B, S, D_ue), mask (B, S), offset (B,),
        reasoning_mask (B, S) + reasoning_text when reasoning is on). S = prompt length + the
        number of generated tokens. `seed` seeds sampled reasoning (default `reasoning.seed`);
        `reasoning` overrides the expert's own `ReasoningConfig` for this call.
        """
        self._check_frozen()
        reasoning = self.reasoning if reasoning is None else reasoning
        inputs = self.encode(batch)
        mask = inputs["padding_mask"].bool()
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
        pkv, hidden = output_cache(out), out.last_hidden_state
        # Next rotary position after the last real token (text positions equal their M-RoPE index).
        pos = inputs["position_ids"].masked_fill(~mask[None], -1)
        offset = (pos.amax(dim=(0, 2)) + 1).long()
        reasoning_mask, texts = None, None
        if reasoning.enabled:
            gen = generate_reasoning(
                self._model,
                pkv,
                hidden[:, -1],  # left padding: the last column is every sample's last prompt token
                mask,
                offset,
                reasoning,
                seed=reasoning.seed if seed is None else seed,
                eos_token_id=self.processor.tokenizer.eos_token_id,
                pad_token_id=self.processor.tokenizer.pad_token_id,
            )
            hidden = torch.cat((hidden, gen.hidden), dim=1)
            reasoning_mask = torch.cat((torch.zeros_like(mask), gen.mask), dim=1)
            mask = torch.cat((mask, gen.mask), dim=1)
            offset = offset + gen.mask.sum(1)
            texts = tuple(self.decode(gen.token_ids, gen.mask))
        valid = mask[:, None, :, None]
        keys = tuple(torch.where(valid, layer.keys, 0.0) for layer in pkv.layers)
        values = tuple(torch.where(valid, layer.values, 0.0) for layer in pkv.layers)
        hidden = torch.where(mask[..., None], hidden, 0.0)
        self.prefill_calls += 1
        return UECache(
            keys=keys,
            values=values,
            hidden=hidden,
            mask=mask,
            position_offset=offset,
            step=int(step),
            time_s=float(time_s),
            reasoning_mask=reasoning_mask,
            reasoning_text=texts,
        ).validate(self._geometry)

    def generate(
        self, batch: SensorBatch, *, max_new_tokens: int = 32, sampling: str = "greedy", seed: int = 0
    ) -> list[str]:
        """Chain-of-thought text for each sample, special tokens removed: the text a prefill with
        reasoning of `max_new_tokens` tokens puts into the cache (same mask, same decoding)."""
        config = ReasoningConfig(max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)
        return list(self.prefill(batch, reasoning=config).reasoning_text)

    def decode(self, token_ids: torch.Tensor, valid: torch.Tensor) -> list[str]:
        """token_ids (B, N), valid (B, N) bool -> B strings (invalid and special tokens dropped)."""
        pad = self.processor.tokenizer.pad_token_id
        ids = torch.where(valid, token_ids, pad)
        return [s.strip() for s in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def _check_frozen(self) -> None:
        if any(m.training for m in self._modules) or any(p.requires_grad for p in self._params):
            raise RuntimeError(
                "FrozenQwen3VLExpert: the understanding expert was unfrozen (training mode or requires_grad "
                "set on a parameter); it must stay frozen. Train the raw model from build_raw_qwen3vl instead."
            )


@dataclass(frozen=True)
class UERecipe:
    """A picklable description of a `FrozenQwen3VLExpert` (see `FrozenQwen3VLExpert.recipe`)."""

    hf_config: object
    state_dict: dict[str, torch.Tensor]
    processor: object
    system_prompt: str
    image_attention: str
    reasoning: ReasoningConfig

    def build(self) -> FrozenQwen3VLExpert:
        """The same frozen expert, weights loaded strictly (every key, every shape)."""
        from transformers import Qwen3VLForConditionalGeneration

        model = Qwen3VLForConditionalGeneration(self.hf_config)
        model.load_state_dict(self.state_dict, strict=True)
        return FrozenQwen3VLExpert(
            model,
            self.processor,
            system_prompt=self.system_prompt,
            image_attention=self.image_attention,
            reasoning=self.reasoning,
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
