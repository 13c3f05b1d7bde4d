"""Small builders shared by tests: seeded synthetic contexts and targets."""

from __future__ import annotations

import torch

from heads import ActionContext, ContextDims, PlanTarget

TINY_DIMS = ContextDims(latent_dim=32, reasoning_dim=24)
TINY_REFINER = {"dim": 32, "depth": 2, "mlp_ratio": 2.0, "moa": {"num_heads": 4}}


def make_context(
    dims: ContextDims = TINY_DIMS, batch: int = 3, seed: int = 0, bev_tokens: int = 16, reasoning: int = 10
) -> ActionContext:
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    bev_mask = torch.ones(batch, bev_tokens, dtype=torch.bool)
    bev_mask[0, -3:] = False  # variable-length BEV in the first sample
    reasoning_mask = torch.ones(batch, reasoning, dtype=torch.bool)
    reasoning_mask[-1, 4:] = False
    return ActionContext(
        plan_latents=r(batch, dims.num_queries, dims.latent_dim),
        decision_latents=r(batch, dims.num_decisions, dims.latent_dim),
        bev_tokens=r(batch, bev_tokens, dims.latent_dim),
        ego_state=r(batch, dims.ego_state_dim),
        ego_history=r(batch, dims.history_len, dims.history_dim),
        bev_mask=bev_mask,
        reasoning_tokens=r(batch, reasoning, dims.reasoning_dim) if dims.reasoning_dim else None,
        reasoning_mask=reasoning_mask if dims.reasoning_dim else None,
    )


def make_target(dims: ContextDims = TINY_DIMS, batch: int = 3, seed: int = 1) -> PlanTarget:
    g = torch.Generator().manual_seed(seed)
    speed = 5 + 10 * torch.rand(batch, 1, generator=g)
    times = 0.5 * torch.arange(1, dims.num_waypoints + 1)
    waypoints = torch.stack(
        [speed * times, 0.1 * torch.randn(batch, dims.num_waypoints, generator=g)], dim=-1
    )
    s = 2.0 * torch.arange(1, dims.num_route + 1).float().expand(batch, -1)
    route = torch.stack([s, 0.05 * torch.randn(batch, dims.num_route, generator=g).cumsum(-1)], dim=-1)
    return PlanTarget(waypoints=waypoints, route=route)


def perturb_zero_init(module: torch.nn.Module, seed: int = 0, std: float = 0.1) -> None:
    """Give zero-initialised parameters (AdaLN modulations, final layers, gates) random values, so a
    test can look at a network away from its identity start."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.numel() and bool((p == 0).all()):
                p.copy_(torch.randn(p.shape, generator=g) * std)


def fit_one_step(stage, data, batch_size: int = 4) -> None:
    """One optimiser step of a training stage on the dataset directory `data` (no logs, no checkpoints)."""
    import lightning as L

    from driving.datamodule import DrivingDataModule

    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(stage, datamodule=DrivingDataModule(data, None, batch_size=batch_size))
