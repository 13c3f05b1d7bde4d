"""Planning heads: the MLP head (the action expert's coarse decoder) and the diffusion head.

All heads share one interface (`PlanningHead`) and one registry (`build_head`, `available_heads`).
"""

from heads.base import HEADS, PlanningHead, available_heads, build_head, register_head
from heads.diffusion import DiffusionHead, DiffusionHeadConfig
from heads.mlp import MLPHead, MLPHeadConfig
from heads.types import ActionContext, ContextDims, Plan, PlanTarget

__all__ = [
    "HEADS",
    "ActionContext",
    "ContextDims",
    "DiffusionHead",
    "DiffusionHeadConfig",
    "MLPHead",
    "MLPHeadConfig",
    "Plan",
    "PlanTarget",
    "PlanningHead",
    "available_heads",
    "build_head",
    "register_head",
]
