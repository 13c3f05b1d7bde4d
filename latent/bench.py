"""Per-step latency of the distilled student against its teacher at batch 1 (LatentVLA: ~3.8x lower).

Three paths on the same observations, timed in interleaved rounds in one process (so load changes
on a shared machine hit all of them alike), medians reported:

- student_ms:      the student planner alone (BEV CNN + decoder + head), from a `SensorBatch`;
- teacher_ae_ms:   the teacher's AE step against an already filled UE cache (AE + planning head),
                   the fast path of `FastSlowPlanner` between UE refreshes;
- teacher_full_ms: the teacher's step with a UE refresh (UE prefill + AE + head), AutoMoT-S;
- ratios: student / teacher_ae and student / teacher_full, on wall time and on CPU time.

Latency depends on the architecture, not on the weights: `automot bench latent` times randomly
initialised networks of a preset; the latent study times its trained ones.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def step_latencies(student, backbone, observations: list, *, steps: int = 50, warmup: int = 3) -> dict:
    """Median per-step milliseconds of the three paths over `steps` rounds (batch 1): wall time
    (`*_ms`) and this process's CPU time (`*_cpu_ms`; with one torch thread it is the latency on an
    idle core, and it is far less disturbed by other jobs on a shared machine than wall time)."""
    from automot.types import SensorBatch

    if steps < 1 or not observations:
        raise ValueError(f"steps / observations: expected >= 1 of each, got {steps} / {len(observations)}")
    student.eval()
    backbone.ae.eval()
    batches = [SensorBatch.from_observations([o]) for o in observations]
    caches = [backbone.prefill(b) for b in batches]
    paths = {
        "student": lambda b, c: student(b, with_aux=False),
        "teacher_ae": lambda b, c: backbone.act(b, c),
        "teacher_full": lambda b, c: backbone(b),
    }
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    with torch.no_grad():
        for i in range(warmup + steps):
            k = i % len(batches)
            for name, fn in paths.items():
                w, c = time.perf_counter(), time.process_time()
                fn(batches[k], caches[k])
                if i >= warmup:
                    cpu[name].append(1000.0 * (time.process_time() - c))
                    wall[name].append(1000.0 * (time.perf_counter() - w))
    out: dict = {}
    for name in paths:
        out[f"{name}_ms"] = round(statistics.median(wall[name]), 3)
        out[f"{name}_cpu_ms"] = round(statistics.median(cpu[name]), 3)
    for suffix in ("ms", "cpu_ms"):
        s = out[f"student_{suffix}"]
        tag = "" if suffix == "ms" else "_cpu"
        out[f"student_over_teacher_ae{tag}"] = round(s / out[f"teacher_ae_{suffix}"], 4)
        out[f"student_over_teacher_full{tag}"] = round(s / out[f"teacher_full_{suffix}"], 4)
    out["threads"] = torch.get_num_threads()
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
