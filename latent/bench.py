"""Per-step latency of the distilled student against its teacher at batch 1 (LatentVLA: ~3.8x lower).

Three paths on the same observations, timed in interleaved rounds in one process (so load changes
on a shared machine hit all of them alike), medians reported:

- student_ms:      the student planner alone (BEV CNN + decoder + head), from a `SensorBatch`;
- teacher_ae_ms:   the teacher's AE step against an already filled UE cache (AE + planning head),
                   the fast path of `FastSlowPlanner` between UE refreshes;
- teacher_full_ms: the teacher's step with a UE refresh (UE prefill + AE + head), AutoMoT-S;
- ratios: student / teacher_ae and student / teacher_full.

Latency depends on the architecture, not on the weights: `automot bench latent` times randomly
initialised networks of a preset; the latent study times its trained ones.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def step_latencies(student, backbone, observations: list, *, steps: int = 50, warmup: int = 3) -> dict:
    """Median per-step milliseconds of the three paths over `steps` rounds (batch 1)."""
    from automot.types import SensorBatch

    if steps < 1 or not observations:
        raise ValueError(f"steps / observations: expected >= 1 of each, got {steps} / {len(observations)}")
    student.eval()
    backbone.ae.eval()
    batches = [SensorBatch.from_observations([o]) for o in observations]
    caches = [backbone.prefill(b) for b in batches]
    times: dict[str, list[float]] = {"student_ms": [], "teacher_ae_ms": [], "teacher_full_ms": []}
    paths = {
        "student_ms": lambda b, c: student(b),
        "teacher_ae_ms": lambda b, c: backbone.act(b, c),
        "teacher_full_ms": lambda b, c: backbone(b),
    }
    with torch.no_grad():
        for i in range(warmup + steps):
            k = i % len(batches)
            for name, fn in paths.items():
                start = time.perf_counter()
                fn(batches[k], caches[k])
                if i >= warmup:
                    times[name].append(1000.0 * (time.perf_counter() - start))
    out = {name: round(statistics.median(v), 3) for name, v in times.items()}
    out["p90"] = {name: round(sorted(v)[int(0.9 * (len(v) - 1))], 3) for name, v in times.items()}
    out["student_over_teacher_ae"] = round(out["student_ms"] / out["teacher_ae_ms"], 4)
    out["student_over_teacher_full"] = round(out["student_ms"] / out["teacher_full_ms"], 4)
    out["steps"] = steps
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="MoT preset of the teacher (default: tiny)")
    parser.add_argument("--student-dim", type=int, default=128, help="student decoder width")
    parser.add_argument("--student-depth", type=int, default=2, help="student decoder blocks")
    parser.add_argument("--image-size", type=int, default=64, help="square RGB size in pixels")
    parser.add_argument("--bev-size", type=int, default=64, help="square BEV raster size in pixels")
    parser.add_argument("--steps", type=int, default=50, help="timed rounds (median reported)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    from automot import spec
    from latent.student import StudentConfig, StudentPlanner, parameter_count
    from mot.backbone import MoTBackbone
    from mot.bench import synthetic_observations

    backbone = MoTBackbone.build(args.preset, seed=args.seed)
    student = StudentPlanner(
        StudentConfig(
            dim=args.student_dim,
            depth=args.student_depth,
            teacher_tokens=backbone.ae.num_tokens,
            teacher_dim=backbone.ae.config.ae.hidden_size,
            latent_tokens=4,
            codebook_size=16,
            seed=args.seed,
        )
    )
    obs = synthetic_observations(
        4,
        frames=spec.UE_HISTORY_FRAMES,
        views=1,
        image_size=args.image_size,
        bev_size=args.bev_size,
        seed=args.seed,
    )
    result = step_latencies(student, backbone, obs, steps=args.steps)
    result["parameters"] = {"student": parameter_count(student), "teacher_ae": parameter_count(backbone.ae)}
    result["preset"] = args.preset
    return result
