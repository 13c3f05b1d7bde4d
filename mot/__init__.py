"""The Mixture-of-Transformers backbone (paper sections 3.1 and 3.3).

A frozen Qwen3-VL understanding expert (UE) fills a per-layer key/value cache; a trainable action
expert (AE) of the same depth and KV layout attends, in every layer, over [UE keys/values ; its own]
under a hybrid mask, and decodes meta-action decisions and a plan. `FastSlowPlanner` refreshes the
UE cache every k steps (in the calling thread, a worker thread or a worker process) while the AE
plans every step. The UE may generate chain-of-thought in the slow loop (`ReasoningConfig`); its
tokens join the cache the AE attends to.

    backbone = MoTBackbone.build("tiny")
    cache = backbone.prefill(batch)          # slow: UE over history + prompt
    out = backbone.act(batch, cache)         # fast: AE against the cache -> MoTOutput
"""

from mot.action_expert import ActionExpert, MoTOutput, build_action_expert
from mot.backbone import MoTBackbone
from mot.cache import UECache
from mot.checkpoint import load_action_expert, save_action_expert
from mot.config import ActionExpertConfig, MoTConfig, QwenUEConfig, ReasoningConfig, UEGeometry
from mot.decision import decision_nll
from mot.mask import Segment, block_ids, hybrid_mask, render_mask, ue_attention_mask
from mot.presets import parameter_counts, preset_config, preset_names
from mot.qwen_offline import build_offline_processor, build_raw_qwen3vl, save_qwen3vl
from mot.runtime import FastSlowConfig, FastSlowPlanner, PlanStep, StaleCacheError
from mot.understanding import FrozenQwen3VLExpert, UnderstandingExpert, ue_geometry

__all__ = [
    "ActionExpert",
    "ActionExpertConfig",
    "FastSlowConfig",
    "FastSlowPlanner",
    "FrozenQwen3VLExpert",
    "MoTBackbone",
    "MoTConfig",
    "MoTOutput",
    "PlanStep",
    "QwenUEConfig",
    "ReasoningConfig",
    "Segment",
    "StaleCacheError",
    "UECache",
    "UEGeometry",
    "UnderstandingExpert",
    "block_ids",
    "build_action_expert",
    "build_offline_processor",
    "build_raw_qwen3vl",
    "decision_nll",
    "hybrid_mask",
    "load_action_expert",
    "parameter_counts",
    "preset_config",
    "preset_names",
    "render_mask",
    "save_action_expert",
    "save_qwen3vl",
    "ue_attention_mask",
    "ue_geometry",
]
