"""Fast-slow inference speed (paper section 3.3, A.1: 0.38 s -> 0.05 s, 7.6x): UE+AE vs AE on a cache.

Measured on one preset, one run, interleaved rounds (so load changes on a shared machine hit every
number alike), medians after warm-up:

- sync_ms:    `FastSlowPlanner.step` with refresh_every=1 (UE prefill + AE every step: AutoMoT-S).
- async_ms:   `FastSlowPlanner.step` on a step that reuses the cache (AE + runtime bookkeeping).
- ae_only_ms: the AE forward alone, batch tensors and cache passed in directly (the floor).
- speedup = sync / async, overhead = async / ae_only.
- background_ms: step latency in background mode (refresh_every=k, the UE worker thread running
  concurrently on the same cores), with the mean cache age it achieved.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from automot import spec
from automot.cli import positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="bench", help="MoT preset (default: bench)")
    parser.add_argument(
        "--frames", type=positive_int, default=spec.UE_HISTORY_FRAMES, help="UE history frames"
    )
    parser.add_argument("--views", type=positive_int, default=2, help="camera views per frame")
    parser.add_argument("--image-size", type=positive_int, default=256, help="square RGB size in pixels")
    parser.add_argument("--bev-size", type=positive_int, default=64, help="square BEV raster size in pixels")
    parser.add_argument("--repeats", type=positive_int, default=15, help="timed rounds (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument(
        "--background-k", type=positive_int, default=2, help="refresh period for background mode"
    )
    parser.add_argument(
        "--background-steps", type=positive_int, default=12, help="steps timed in background mode"
    )
    parser.add_argument("--seed", type=int, default=0)


def synthetic_observations(
    n: int, *, frames: int, views: int, image_size: int, bev_size: int, seed: int = 0
) -> list:
    """`n` random `Observation`s of the given sensor sizes (benchmarks time compute, not content)."""
    from automot.types import Observation

    rng = np.random.RandomState(seed)
    out = []
    for i in range(n):
        out.append(
            Observation(
                rgb_history=rng.randint(0, 256, (frames, views, 3, image_size, image_size)).astype(np.uint8),
                rgb=rng.randint(0, 256, (3, image_size, image_size)).astype(np.uint8),
                bev=rng.rand(len(spec.BEV_CHANNELS), bev_size, bev_size).astype(np.float32),
                ego_state=rng.randn(spec.EGO_STATE_DIM).astype(np.float32),
                ego_history=rng.randn(spec.HISTORY_LEN, spec.HISTORY_DIM).astype(np.float32),
                target_point=rng.randn(2).astype(np.float32) * 10,
                prompt="turn left at the next junction and keep a safe gap to the car ahead",
                step=i,
                time_s=0.5 * i,
            )
        )
    return out


def run(args: argparse.Namespace) -> dict:
    import torch

    from automot.types import SensorBatch
    from mot.backbone import MoTBackbone
    from mot.presets import parameter_counts
    from mot.runtime import FastSlowPlanner

    for name in ("frames", "views", "image_size", "bev_size", "repeats", "background_k", "background_steps"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an int >= 1, got {getattr(args, name)}")
    backbone = MoTBackbone.build(args.preset, seed=args.seed)
    obs = synthetic_observations(
        4,
        frames=args.frames,
        views=args.views,
        image_size=args.image_size,
        bev_size=args.bev_size,
        seed=args.seed,
    )
    sync = FastSlowPlanner(backbone, refresh_every=1, mode="sync")
    never = 1 << 30
    cached = FastSlowPlanner(backbone, refresh_every=never, mode="sync", max_cache_age=never)
    cached.step(obs[0])  # fills the cache once; later steps reuse it
    batch = SensorBatch.from_observations([obs[1]])
    cache = backbone.prefill(batch)

    def ae_only() -> None:
        with torch.no_grad():
            backbone.act(batch, cache)

    def prefill() -> None:
        backbone.prefill(batch)

    timers = {
        "sync": lambda i: sync.step(obs[i % len(obs)]),
        "async": lambda i: cached.step(obs[i % len(obs)]),
        "ae_only": lambda i: ae_only(),
        "prefill": lambda i: prefill(),
    }
    samples: dict[str, list[float]] = {k: [] for k in timers}
    for r in range(args.warmup + args.repeats):
        for key, fn in timers.items():
            t0 = time.perf_counter()
            fn(r)
            dt = time.perf_counter() - t0
            if r >= args.warmup:
                samples[key].append(dt * 1e3)
    ms = {k: statistics.median(v) for k, v in samples.items()}

    # Background mode: the UE worker competes with the fast loop for the same cores.
    with FastSlowPlanner(
        backbone, refresh_every=args.background_k, mode="background", max_cache_age=never
    ) as bg:
        bg.step(obs[0])
        bg.wait_idle()
        lat, ages = [], []
        for i in range(1, args.background_steps + 1):
            t0 = time.perf_counter()
            s = bg.step(obs[i % len(obs)])
            lat.append((time.perf_counter() - t0) * 1e3)
            ages.append(s.cache_age_steps)
        bg_calls = bg.ue_calls

    counts = parameter_counts(backbone.config)
    return {
        "preset": args.preset,
        "batch_size": 1,
        "frames": args.frames,
        "views": args.views,
        "image_size": args.image_size,
        "ue_seq_len": cache.seq_len,
        "ae_seq_len": backbone.ae.num_tokens,
        "ue_params": counts["ue"],
        "ae_params": counts["ae"],
        "param_ratio": round(counts["ue"] / counts["ae"], 3),
        "sync_ms": round(ms["sync"], 3),
        "async_ms": round(ms["async"], 3),
        "ae_only_ms": round(ms["ae_only"], 3),
        "ue_prefill_ms": round(ms["prefill"], 3),
        "speedup": round(ms["sync"] / ms["async"], 3),
        "overhead": round(ms["async"] / ms["ae_only"], 3),
        "background_k": args.background_k,
        "background_ms": round(statistics.median(lat), 3),
        "background_p90_ms": round(float(np.percentile(lat, 90)), 3),
        "background_mean_cache_age": round(float(np.mean(ages)), 3),
        "background_ue_calls": bg_calls,
        "repeats": args.repeats,
    }
