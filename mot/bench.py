"""Fast-slow inference, measured honestly (paper section 3.3, A.1: AutoMoT-S 0.38 s vs AutoMoT 0.05 s).

One run, one process, interleaved rounds (a load change on a shared machine hits every mode alike).
Per-step latency (p50 / p90 / p99 / mean, ms) of `FastSlowPlanner.step`, batch of one, for:

- `floor`:              the AE alone against a ready cache, with the AE's budget of the background
                        modes (its cores and threads): what a step costs with no UE anywhere.
- `floor_all_cores`:    the AE alone with every core (the best an AE step can do here).
- `sync_every_step`:    UE + AE every step (AutoMoT-S), every core.
- `sync_every_k`:       the UE every k steps in the calling thread (the public code's default k = 2).
- `background_thread`:  refresh every k steps in a worker thread with its own torch pool and core,
                        the fast loop on the other core; the UE really runs concurrently (each block
                        starts the UE before timing; `ue_busy_share` = share of timed steps that
                        began while a refresh was running).
- `background_process`: the same with the UE in a worker process (no shared GIL).

For the background modes: cache age (steps and wall-clock seconds since the UE's observation) mean
and max. Headline: background p50 / floor and p90 / floor (the same AE budget). The old ratio
(UE + AE) / AE is reported only as `ue_plus_ae_over_ae`: it is the preset's size ratio, not a
measured speed-up of anything the planner does.

Cores: with >= 2 usable cores the AE (calling thread) is pinned to the first and the UE worker to
the others, one torch thread each side unless told otherwise; the sync modes and
`floor_all_cores` use every core. `cores` in the result says what was used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import numpy as np

from automot import spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="bench", help="MoT preset (default: bench)")
    parser.add_argument("--frames", type=int, default=spec.UE_HISTORY_FRAMES, help="UE history frames")
    parser.add_argument("--views", type=int, default=2, help="camera views per frame")
    parser.add_argument("--image-size", type=int, default=256, help="square RGB size in pixels")
    parser.add_argument("--bev-size", type=int, default=64, help="square BEV raster size in pixels")
    parser.add_argument(
        "--k", type=int, default=2, help="UE refresh period in steps (sync_every_k, background)"
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds over all modes")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per mode per round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument(
        "--executors", default="thread,process", help="background executors to time (thread, process)"
    )
    parser.add_argument(
        "--ae-threads", type=int, default=1, help="torch threads of the AE in background mode"
    )
    parser.add_argument("--ue-threads", type=int, default=None, help="torch threads of the UE worker")
    parser.add_argument(
        "--reasoning-tokens",
        type=int,
        default=32,
        help="also time a UE refresh that generates this many tokens",
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


def latency_stats(ms: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean / max of per-step latencies in ms, and the count."""
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "max_ms": round(float(a.max()), 3),
        "n": int(a.size),
    }


def core_split(ae_threads: int, ue_threads: int | None) -> dict:
    """Which cores the AE (calling thread) and the UE worker get; no pinning below 2 cores."""
    try:
        available = sorted(os.sched_getaffinity(0))
    except AttributeError:
        available = list(range(os.cpu_count() or 1))
    if len(available) >= 2:
        n_ae = min(max(1, ae_threads), len(available) - 1)
        ae, ue = available[:n_ae], available[n_ae:]
    else:
        ae, ue = None, None
    return {
        "available": available,
        "ae": ae,
        "ue": ue,
        "ae_threads": ae_threads,
        "ue_threads": ue_threads if ue_threads is not None else (len(ue) if ue else 1),
        "sync_threads": len(available),
    }


@contextlib.contextmanager
def budget(cores: list[int] | None, threads: int):
    """Run the calling thread on `cores` with `threads` torch threads, then restore both."""
    import torch

    old_threads = torch.get_num_threads()
    old_cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    torch.set_num_threads(threads)
    if cores is not None and old_cores is not None:
        os.sched_setaffinity(0, set(cores))
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        if cores is not None and old_cores is not None:
            os.sched_setaffinity(0, old_cores)


class _Clock:
    """Observations stamped with wall-clock time, so cache ages in seconds are real seconds."""

    def __init__(self, observations: list) -> None:
        self.observations, self.i = observations, 0

    def next(self):
        obs = self.observations[self.i % len(self.observations)]
        self.i += 1
        obs.time_s = time.perf_counter()
        return obs


def run(args: argparse.Namespace) -> dict:
    import torch

    from automot.types import SensorBatch
    from mot.backbone import MoTBackbone
    from mot.config import ReasoningConfig
    from mot.presets import parameter_counts
    from mot.runtime import FastSlowPlanner

    for name in ("frames", "views", "image_size", "bev_size", "k", "rounds", "steps", "ae_threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected an int >= 1, got {getattr(args, name)}")
    if args.warmup < 0 or args.reasoning_tokens < 0:
        raise ValueError(
            f"--warmup / --reasoning-tokens: expected ints >= 0, got {args.warmup} / {args.reasoning_tokens}"
        )
    executors = [e.strip() for e in args.executors.split(",") if e.strip()]
    bad = sorted(set(executors) - {"thread", "process"})
    if bad:
        raise ValueError(f"--executors: expected names from ['thread', 'process'], got {bad}")

    cores = core_split(args.ae_threads, args.ue_threads)
    backbone = MoTBackbone.build(args.preset, seed=args.seed)
    clock = _Clock(
        synthetic_observations(
            4,
            frames=args.frames,
            views=args.views,
            image_size=args.image_size,
            bev_size=args.bev_size,
            seed=args.seed,
        )
    )
    batch = SensorBatch.from_observations([clock.observations[0]])
    cache = backbone.prefill(batch)
    never = 1 << 30
    k = args.k

    planners = {
        "sync_every_step": FastSlowPlanner(backbone, refresh_every=1, mode="sync"),
        "sync_every_k": FastSlowPlanner(backbone, refresh_every=k, mode="sync"),
    }
    for ex in executors:
        planners[f"background_{ex}"] = FastSlowPlanner(
            backbone,
            refresh_every=k,
            mode="background",
            max_cache_age=never,
            executor=ex,
            ue_threads=cores["ue_threads"],
            ue_cores=tuple(cores["ue"]) if cores["ue"] else None,
        )
    for p in planners.values():
        p.start()  # a worker process takes seconds to start: not part of any timing

    lat: dict[str, list[float]] = {m: [] for m in ("floor", "floor_all_cores", *planners)}
    ages: dict[str, list[tuple[int, float]]] = {m: [] for m in planners if m.startswith("background")}
    busy: dict[str, list[bool]] = {m: [] for m in ages}
    refreshes: dict[str, int] = {m: 0 for m in ages}

    def ae_floor(timed: bool, key: str) -> None:
        for _ in range(args.steps):
            t0 = time.perf_counter()
            with torch.no_grad():
                backbone.act(batch, cache)
            if timed:
                lat[key].append((time.perf_counter() - t0) * 1e3)

    def planner_block(name: str, timed: bool) -> None:
        p = planners[name]
        p.reset(None)
        background = name.startswith("background")
        # Untimed: the first k steps start the episode (and, in background, the UE worker).
        for _ in range(k):
            p.step(clock.next())
        for _ in range(args.steps):
            running = background and not p.wait_idle(0)
            t0 = time.perf_counter()
            s = p.step(clock.next())
            dt = (time.perf_counter() - t0) * 1e3
            if timed:
                lat[name].append(dt)
                if background:
                    ages[name].append((s.cache_age_steps, s.cache_age_s))
                    busy[name].append(running)
                    refreshes[name] += int(s.ue_refreshed)
        if background:
            p.wait_idle()  # nothing of this block keeps running into the next one

    try:
        for r in range(args.warmup + args.rounds):
            timed = r >= args.warmup
            with budget(cores["ae"], args.ae_threads):
                ae_floor(timed, "floor")
                for name in planners:
                    if name.startswith("background"):
                        planner_block(name, timed)
            ae_floor(timed, "floor_all_cores")
            for name in ("sync_every_step", "sync_every_k"):
                planner_block(name, timed)
        prefill_ms, reasoning_ms, generated = _slow_loop_times(
            backbone, batch, args.reasoning_tokens, ReasoningConfig
        )
    finally:
        for p in planners.values():
            p.close()

    result: dict = {
        "preset": args.preset,
        "batch_size": 1,
        "frames": args.frames,
        "views": args.views,
        "image_size": args.image_size,
        "k": k,
        "ue_seq_len": cache.seq_len,
        "ae_seq_len": backbone.ae.num_tokens,
        "cores": cores,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
    }
    counts = parameter_counts(backbone.config)
    result.update(
        ue_params=counts["ue"], ae_params=counts["ae"], param_ratio=round(counts["ue"] / counts["ae"], 3)
    )
    for name, values in lat.items():
        result[name] = latency_stats(values)
    floor = result["floor"]
    for name in ages:
        steps = [a for a, _ in ages[name]]
        secs = [s for _, s in ages[name]]
        result[name].update(
            cache_age_steps_mean=round(float(np.mean(steps)), 3),
            cache_age_steps_max=int(max(steps)),
            cache_age_s_mean=round(float(np.mean(secs)), 4),
            cache_age_s_max=round(float(max(secs)), 4),
            ue_busy_share=round(float(np.mean(busy[name])), 3),
            ue_refreshes=refreshes[name],
            p50_over_floor=round(result[name]["p50_ms"] / floor["p50_ms"], 3),
            p90_over_floor=round(result[name]["p90_ms"] / floor["p90_ms"], 3),
            p50_over_floor_all_cores=round(result[name]["p50_ms"] / result["floor_all_cores"]["p50_ms"], 3),
        )
    for name in ("sync_every_step", "sync_every_k"):
        result[name]["mean_over_floor_all_cores"] = round(
            result[name]["mean_ms"] / result["floor_all_cores"]["mean_ms"], 3
        )
    result["ue_prefill_ms"] = round(prefill_ms, 3)
    result["ue_plus_ae_over_ae"] = round(
        result["sync_every_step"]["p50_ms"] / result["floor_all_cores"]["p50_ms"], 3
    )
    if reasoning_ms is not None:
        result["ue_refresh_with_reasoning_ms"] = round(reasoning_ms, 3)
        result["reasoning_tokens_generated"] = generated
    best = min(ages, key=lambda m: result[m]["p50_over_floor"]) if ages else None
    result["headline"] = (
        None
        if best is None
        else {
            "mode": best,
            "background_p50_over_floor": result[best]["p50_over_floor"],
            "background_p90_over_floor": result[best]["p90_over_floor"],
            "sync_every_step_p50_over_background_p50": round(
                result["sync_every_step"]["p50_ms"] / result[best]["p50_ms"], 3
            ),
        }
    )
    return result


def _slow_loop_times(
    backbone, batch, tokens: int, reasoning_config
) -> tuple[float, float | None, float | None]:
    """Median UE refresh time without and with `tokens` reasoning tokens (3 each, every core)."""
    plain, reasoning, generated = [], [], []
    for _ in range(3):
        t0 = time.perf_counter()
        backbone.prefill(batch)
        plain.append((time.perf_counter() - t0) * 1e3)
        if tokens:
            t0 = time.perf_counter()
            c = backbone.ue.prefill(batch, reasoning=reasoning_config(max_new_tokens=tokens))
            reasoning.append((time.perf_counter() - t0) * 1e3)
            generated.append(float(c.num_generated.float().mean()))
    if not tokens:
        return statistics.median(plain), None, None
    return statistics.median(plain), statistics.median(reasoning), statistics.median(generated)
