"""Latency of the MLP head vs the diffusion head (truncated, 1/2/5/10 steps) vs 50-step DDIM from noise.

All heads are timed on the same synthetic ActionContext (BEV 8x8 tokens, 64 reasoning tokens) at
the refiner's default size, at batch 1 and a larger batch, in one process (ratios are the figures to
trust on a shared machine).
"""

from __future__ import annotations

import argparse

from automot.cli import positive_int

STEP_COUNTS = (1, 2, 5, 10)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch-sizes", type=positive_int, nargs="+", default=[1, 16], help="batch sizes to time"
    )
    parser.add_argument(
        "--latent-dim", type=int, default=256, help="action-expert width of the synthetic context"
    )
    parser.add_argument("--reasoning-dim", type=int, default=512, help="understanding-expert width")
    parser.add_argument(
        "--refiner-dim", type=int, default=256, help="refiner width (default: the library default)"
    )
    parser.add_argument("--refiner-depth", type=positive_int, default=4, help="number of DiT blocks")
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--backbone",
        default="bench",
        help="MoT preset for the whole planning step (AE + head) at batch 1; 'none' to skip",
    )


def run(args: argparse.Namespace) -> dict:
    import torch

    from heads import ContextDims, build_head

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dims = ContextDims(latent_dim=args.latent_dim, reasoning_dim=args.reasoning_dim)
    mlp = build_head("mlp", dims).eval()
    diffusion = build_head(
        "diffusion", dims, refiner={"dim": args.refiner_dim, "depth": args.refiner_depth}
    ).eval()
    # Trained-like weights: the zero-initialised AdaLN layers would let some kernels skip work.
    with torch.no_grad():
        for p in diffusion.parameters():
            if bool((p == 0).all()):
                p.normal_(0, 0.02)
    params = {
        "mlp_head": sum(p.numel() for p in mlp.parameters()),
        "diffusion_head": sum(p.numel() for p in diffusion.parameters()),
        "refiner": sum(p.numel() for p in diffusion.denoiser.parameters()),
    }

    by_batch = [_time_batch(mlp, diffusion, dims, b, args.repeats) for b in args.batch_sizes]
    first = by_batch[0]
    out = {**first, "params": params, "by_batch": by_batch, "refiner_config": _config(diffusion)}
    if args.backbone != "none":
        out["planning_step"] = _planning_step(args.backbone, args.repeats)
    return out


def _planning_step(preset: str, repeats: int) -> dict:
    """One planning step at batch 1: the action expert against a filled UE cache, then the head.

    The same AE weights plan with its MLP head and with a diffusion head built around that MLP head.
    """
    import torch

    from automot.timing import median_ms
    from automot.types import SensorBatch
    from heads import DiffusionHead
    from mot.backbone import MoTBackbone
    from mot.bench import synthetic_observations

    backbone = MoTBackbone.build(preset, seed=0)
    ae = backbone.ae.eval()
    obs = synthetic_observations(1, frames=4, views=2, image_size=256, bev_size=64)
    batch = SensorBatch.from_observations(obs)
    cache = backbone.prefill(batch)
    g = torch.Generator().manual_seed(0)
    mlp_head = ae.head
    diffusion = DiffusionHead.from_mlp_head(mlp_head).eval()
    with torch.inference_mode():
        mlp_ms = median_ms(lambda: ae(batch, cache, generator=g), repeats=repeats)
        ae.head = diffusion
        try:
            diffusion_ms = median_ms(lambda: ae(batch, cache, generator=g), repeats=repeats)
        finally:
            ae.head = mlp_head
    return {
        "preset": preset,
        "ae_mlp_ms": mlp_ms,
        "ae_diffusion2_ms": diffusion_ms,
        "diffusion2_over_mlp": round(diffusion_ms / mlp_ms, 3),
    }


def _time_batch(mlp, diffusion, dims, b: int, repeats: int) -> dict:
    import torch

    from automot.timing import median_ms
    from heads import ActionContext

    g = torch.Generator().manual_seed(0)
    ctx = ActionContext(
        plan_latents=torch.randn(b, dims.num_queries, dims.latent_dim, generator=g),
        decision_latents=torch.randn(b, dims.num_decisions, dims.latent_dim, generator=g),
        bev_tokens=torch.randn(b, 64, dims.latent_dim, generator=g),
        ego_state=torch.randn(b, dims.ego_state_dim, generator=g),
        ego_history=torch.randn(b, dims.history_len, dims.history_dim, generator=g),
        reasoning_tokens=torch.randn(b, 64, dims.reasoning_dim, generator=g),
    )

    def full():
        return diffusion.denoiser.sample_from_noise(diffusion.encode(ctx), b, g, num_steps=50)

    with torch.inference_mode():
        row = {"batch_size": b, "mlp_ms": median_ms(lambda: mlp(ctx), repeats=repeats)}
        row["diffusion_ms"] = {
            str(n): median_ms(lambda n=n: diffusion(ctx, generator=g, num_steps=n), repeats=repeats)
            for n in STEP_COUNTS
        }
        row["full_ddim_ms"] = median_ms(full, repeats=max(3, repeats // 5), warmup=1)
    two = row["diffusion_ms"]["2"]
    row["diffusion2_over_mlp"] = round(two / row["mlp_ms"], 2)
    row["full_ddim_over_diffusion2"] = round(row["full_ddim_ms"] / two, 2)
    return row


def _config(head) -> dict:
    c = head.config
    return {
        "dim": c.refiner.dim,
        "depth": c.refiner.depth,
        "scheduler": c.denoiser.schedule.scheduler,
        "t_start": c.denoiser.schedule.t_start,
    }
