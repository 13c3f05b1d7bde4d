"""The training stages as LightningModules (paper section 3.2 and appendix A.3; latent actions and
distillation after LatentVLA)."""

from training.stages.action_expert import ActionExpertStage
from training.stages.base import PolicyStage
from training.stages.distill import DistillStage, DistillWeights
from training.stages.lam import LAMStage
from training.stages.latent_finetune import LatentFinetuneStage
from training.stages.latent_pretrain import LatentPretrainStage
from training.stages.refiner import RefinerStage
from training.stages.ue_pretrain import UEPretrainStage

__all__ = [
    "ActionExpertStage",
    "DistillStage",
    "DistillWeights",
    "LAMStage",
    "LatentFinetuneStage",
    "LatentPretrainStage",
    "PolicyStage",
    "RefinerStage",
    "UEPretrainStage",
]
