"""The training stages as LightningModules (paper section 3.2 and appendix A.3)."""

from training.stages.action_expert import ActionExpertStage
from training.stages.base import PolicyStage
from training.stages.refiner import RefinerStage
from training.stages.ue_pretrain import UEPretrainStage

__all__ = ["ActionExpertStage", "PolicyStage", "RefinerStage", "UEPretrainStage"]
