"""Build a Qwen3-VL understanding expert offline: HF config, processor and raw (trainable) model.

No hub access exists here, and no pretrained Qwen3-VL weights: tests, demos and the UE scene
pretraining stage (training issue) use a model of the real architecture built in code. This module
returns the *raw* `Qwen3VLForConditionalGeneration` and its processor so that stage can train it
explicitly; `mot.understanding.FrozenQwen3VLExpert` is the frozen wrapper the backbone uses.

The processor is a `Qwen3VLProcessor` over a word-level tokenizer (a fixed driving vocabulary plus
Qwen's special tokens) and Qwen2-VL image/video processors, which all build offline. A saved
directory (`save_qwen3vl`) is a normal HF checkpoint folder (safetensors + JSON) that
`from_pretrained` loads offline, exactly like a real Qwen3-VL checkpoint.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from automot.vocabulary import WORLD_VOCABULARY
from mot.config import QwenUEConfig

# Qwen's chat and vision special tokens, same strings as the real tokenizer.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
PAD_TOKEN, EOS_TOKEN = "<|endoftext|>", "<|im_end|>"
UNK_TOKEN = "[UNK]"

# A small driving vocabulary for the offline tokenizer (whitespace/punctuation pre-tokenised).
_WORDS_TEXT = """
system user assistant you are a an the careful driver describe scene and decide what to do drive
car cars vehicle vehicles truck bus bike cyclist pedestrian pedestrians person people ego lane lanes
road roads junction intersection roundabout merge highway exit ramp street crossing traffic light
lights red green yellow stop sign signs yield give way keep accelerate slow brake brakes stopped
turn turning left right straight slight ahead behind front back rear side sides next near far close
in on at of for with from into onto out off over under up down before after then now soon later
is are be will can should must not no yes there here this that it its we they he she them
change follow following leading lead gap gaps speed speeds fast faster slower limit safe safely
danger dangerous risk collision avoid wait waiting clear free blocked busy empty open
one two three four five six seven eight nine ten zero first second third meters metres m s km h
view views camera cameras frame frames image images time seconds navigation instruction route
target point goal reach go going continue continuing enter leave leaving pass passing overtake
because so but if when while until since as than more less most least very too also only
"""
_WORDS = _WORDS_TEXT.split()
_PUNCT = [".", ",", ":", ";", "?", "!", "-", "(", ")", "'", '"', "/"]


def offline_vocabulary() -> dict[str, int]:
    """Token -> id: special tokens first (fixed ids), then [UNK], punctuation, digits and words."""
    tokens = [*SPECIAL_TOKENS, UNK_TOKEN, *_PUNCT, *[str(i) for i in range(10)]]
    seen = set(tokens)
    # The embedded world's closed vocabulary (prompts and scene text) comes after the chat words.
    for w in (*_WORDS, *WORLD_VOCABULARY):
        if w not in seen:
            tokens.append(w)
            seen.add(w)
    return {t: i for i, t in enumerate(tokens)}


def build_offline_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=offline_vocabulary(), unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        padding_side="left",  # left padding: generation appends on the right of every prompt
    )


def build_offline_processor(config: QwenUEConfig):
    """A `Qwen3VLProcessor` matching `config`'s vision geometry, built without any file download."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    common = dict(
        patch_size=config.patch_size,
        merge_size=config.spatial_merge_size,
        temporal_patch_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    image = Qwen2VLImageProcessor(
        min_pixels=config.image_min_pixels, max_pixels=config.image_max_pixels, **common
    )
    video = Qwen3VLVideoProcessor(**common)
    return Qwen3VLProcessor(image_processor=image, tokenizer=build_offline_tokenizer(), video_processor=video)


def build_hf_config(config: QwenUEConfig):
    """The `Qwen3VLConfig` of an in-code UE geometry."""
    from transformers import Qwen3VLConfig

    if config.checkpoint is not None:
        raise ValueError("build_hf_config: expected an in-code geometry, got QwenUEConfig.checkpoint set")
    vocab = offline_vocabulary()
    vocab_size = len(vocab) if config.vocab_size is None else config.vocab_size
    if vocab_size < len(vocab):
        raise ValueError(
            f"QwenUEConfig.vocab_size: expected >= {len(vocab)} (the offline tokenizer's size), got {vocab_size}"
        )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.head_dim,
        rope_parameters=dict(
            rope_type="default",
            rope_theta=float(config.rope_theta),
            mrope_section=list(config.mrope_section),
            mrope_interleaved=True,
        ),
        max_position_embeddings=32768,
        tie_word_embeddings=config.tie_word_embeddings,
        pad_token_id=vocab[PAD_TOKEN],
        eos_token_id=vocab[EOS_TOKEN],
    )
    vision = dict(
        depth=config.vision_depth,
        hidden_size=config.vision_hidden_size,
        intermediate_size=config.vision_intermediate_size,
        num_heads=config.vision_num_heads,
        patch_size=config.patch_size,
        spatial_merge_size=config.spatial_merge_size,
        temporal_patch_size=2,
        out_hidden_size=config.hidden_size,
        num_position_embeddings=config.num_position_embeddings,
        deepstack_visual_indexes=list(config.deepstack_visual_indexes),
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        tie_word_embeddings=config.tie_word_embeddings,
    )


def build_raw_qwen3vl(config: QwenUEConfig, *, device: torch.device | str = "cpu"):
    """(model, processor): a trainable, randomly initialised Qwen3-VL of `config`'s geometry.

    Initialisation is seeded by `config.seed` through a local generator state (the global RNG is
    restored afterwards). On the meta device no values are drawn.
    """
    from transformers import Qwen3VLForConditionalGeneration

    hf_config = build_hf_config(config)
    device = torch.device(device)
    if device.type == "meta":
        with torch.device("meta"):
            model = Qwen3VLForConditionalGeneration(hf_config)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = Qwen3VLForConditionalGeneration(hf_config)
        model = model.to(device)
    return model, build_offline_processor(config)


@contextlib.contextmanager
def quiet_hf_progress():
    """No per-shard progress bars while a local folder is written or read (they flood study logs)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def save_qwen3vl(model, processor, directory: str | os.PathLike) -> Path:
    """Write an HF checkpoint folder: `model.safetensors` + `config.json` + processor JSON files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with quiet_hf_progress():
        model.save_pretrained(directory, safe_serialization=True)
    processor.save_pretrained(directory)
    return directory
