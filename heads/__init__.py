"""Planning heads: the MLP head (the action expert's coarse decoder) and the diffusion head.

All heads share one interface (`PlanningHead`, see `heads.base` for the contract a plug-in head
implements) and one registry (`register_head`, `build_head`, `available_heads`). `plan_l1_loss` is
the trajectory loss of the built-in heads, for head authors.
"""

from heads.base import HEADS, PlanningHead, available_heads, build_head, head_class, register_head
from heads.diffusion import DiffusionHead, DiffusionHeadConfig
from heads.losses import plan_l1_loss, weighted_waypoint_l1
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
    "head_class",
    "plan_l1_loss",
    "register_head",
    "weighted_waypoint_l1",
]
