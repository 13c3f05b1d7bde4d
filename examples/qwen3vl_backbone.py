"""The MoT backbone with a real, local Qwen3-VL checkpoint folder as its frozen understanding expert,
driving a few steps in the embedded world with the fast-slow planner.

    python examples/qwen3vl_backbone.py --ue /path/to/Qwen3-VL-4B-Instruct [--steps 6] [--preset tiny]
    AUTOMOT_QWEN3VL_DIR=/path/to/Qwen3-VL-4B-Instruct python examples/qwen3vl_backbone.py

Nothing is downloaded: the folder must hold `config.json`, safetensors weights and the processor
files (as `huggingface-cli download Qwen/Qwen3-VL-4B-Instruct --local-dir ...` leaves them). The
action expert takes the preset's width and the UE's depth and KV-head layout (it attends to the UE's
keys/values layer by layer), so `tiny` gives a small AE beside the full UE. Without a folder the
example says so and exits 0. Its weights are random: this shows the wiring, not a trained policy
(train one with `automot fit ... --model.init_args.backbone.ue_checkpoint=FOLDER`).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ENV = "AUTOMOT_QWEN3VL_DIR"


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ue", default=os.environ.get(ENV), help=f"local Qwen3-VL folder (or ${ENV})")
    parser.add_argument("--preset", default="tiny", help="AE size preset (tiny, small, bench, paper)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--scenario", default="highway")
    args = parser.parse_args(argv)
    if not args.ue:
        print(f"skipped: no Qwen3-VL checkpoint folder given (pass --ue FOLDER or set {ENV})")
        return None
    folder = Path(args.ue)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"--ue: expected a local Qwen3-VL folder with config.json, got {folder}")

    from automot.types import EpisodeInfo
    from driving import Tracker, World
    from mot import FastSlowPlanner, MoTBackbone
    from mot.presets import preset_config

    start = time.perf_counter()
    backbone = MoTBackbone.build(preset_config(args.preset, {"ue": {"checkpoint": str(folder)}}), seed=0)
    ue_params = backbone.ue.num_parameters()
    ae_params = sum(p.numel() for p in backbone.ae.parameters())
    print(
        f"UE {folder.name}: {ue_params / 1e6:.1f} M parameters (frozen); AE ({args.preset}): "
        f"{ae_params / 1e6:.2f} M; loaded in {time.perf_counter() - start:.1f} s"
    )

    world, tracker = World(args.scenario), Tracker()
    planner = FastSlowPlanner(backbone, refresh_every=2, seed=0)
    obs = world.reset(seed=0)
    planner.reset(EpisodeInfo(args.scenario, seed=0))
    ages = []
    for step in range(args.steps):
        t0 = time.perf_counter()
        plan = planner.step(obs)
        ms = 1e3 * (time.perf_counter() - t0)
        ages.append(plan.cache_age_steps)
        print(
            f"step {step}: {'/'.join(plan.longitudinal)} (1/2/3 s), last waypoint {plan.waypoints[-1].round(1)} "
            f"cache age {plan.cache_age_steps} ({'UE + AE' if plan.ue_refreshed else 'AE only'}, {ms:.0f} ms)"
        )
        world.step(tracker(plan.waypoints, float(world.ego.speed), plan.route).action)
        obs = world.observe()
    world.close()
    return {"ue_params": ue_params, "ae_params": ae_params, "cache_ages": ages}


if __name__ == "__main__":
    main()
