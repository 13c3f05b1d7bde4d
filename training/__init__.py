"""Training: Lightning stages, open-loop metrics, checkpoints (paper sections 3.2, 4.1, A.3)."""
