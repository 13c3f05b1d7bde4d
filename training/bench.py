"""Training throughput of the action-expert stage and the refiner stage (one optimiser step each).

For each stage: the median step time (forward, backward, AdamW step) at a fixed batch, samples per
second, the FLOPs of one step counted by `torch.utils.flop_counter` and the achieved GFLOP/s, next
to the peak of a plain fp32 matmul measured in the same run (the "limit" on this machine).
"""

from __future__ import annotations

import argparse

from automot.cli import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="small", help="MoT preset (default: small)")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--image-size", type=positive_int, default=64, help="square RGB size")
    parser.add_argument("--bev-size", type=positive_int, default=64, help="square BEV size")
    parser.add_argument("--repeats", type=positive_int, default=10)
    parser.add_argument(
        "--matmul-size", type=positive_int, default=2048, help="n of the n x n fp32 matmul peak"
    )


def peak_matmul_gflops(n: int, repeats: int = 5) -> float:
    import torch

    from automot.timing import median_ms

    a, b = torch.randn(n, n), torch.randn(n, n)
    ms = median_ms(lambda: a @ b, repeats=repeats, warmup=2)
    return 2 * n**3 / (ms * 1e-3) / 1e9


def run(args: argparse.Namespace) -> dict:
    import tempfile

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from automot.timing import median_ms
    from training.bench_data import synthetic_batch
    from training.optim import OptimConfig, build_optimizer
    from training.policy import BackboneSpec, save_pretrained
    from training.stages import ActionExpertStage, RefinerStage

    if args.batch_size < 1 or args.repeats < 1:
        raise ValueError(f"--batch-size/--repeats: expected >= 1, got {args.batch_size}/{args.repeats}")
    torch.manual_seed(0)
    batch = synthetic_batch(args.batch_size, image_size=args.image_size, bev_size=args.bev_size)
    ae_stage = ActionExpertStage(backbone=BackboneSpec(preset=args.preset), optim=OptimConfig())
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(ae_stage.ae, f"{tmp}/policy")
        refiner_stage = RefinerStage(policy=f"{tmp}/policy", optim=OptimConfig())

    def measure(stage) -> dict:
        optimizer = build_optimizer(stage.ae, stage.optim)

        def step():
            optimizer.zero_grad(set_to_none=True)
            stage.losses(batch)["loss"].backward()
            optimizer.step()

        step_ms = median_ms(step, repeats=args.repeats, warmup=2)
        with FlopCounterMode(display=False) as counter:
            step()
        flops = counter.get_total_flops()
        trainable = sum(p.numel() for p in stage.ae.parameters() if p.requires_grad)
        return {
            "step_ms": round(step_ms, 2),
            "samples_per_s": round(args.batch_size / (step_ms * 1e-3), 1),
            "gflop_per_step": round(flops / 1e9, 3),
            "achieved_gflops": round(flops / (step_ms * 1e-3) / 1e9, 2),
            "trainable_params": trainable,
        }

    out = {"preset": args.preset, "batch_size": args.batch_size}
    out["ae_stage"] = measure(ae_stage)
    out["refiner_stage"] = measure(refiner_stage)
    peak = peak_matmul_gflops(args.matmul_size)
    out["peak_gflops"] = round(peak, 1)
    for key in ("ae_stage", "refiner_stage"):
        out[key]["fraction_of_peak"] = round(out[key]["achieved_gflops"] / peak, 3)
    return out
