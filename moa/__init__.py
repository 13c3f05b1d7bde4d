"""Mixture-of-Attention: the refiner's main-bypass multi-source fusion block (paper appendix A.3)."""

from moa.block import AttentionPool, MixtureOfAttention, MoAConfig, MoAMemory, masked_mean

__all__ = ["AttentionPool", "MixtureOfAttention", "MoAConfig", "MoAMemory", "masked_mean"]
