"""Swap planning heads on one trained action expert and compare them open and closed loop.

    python examples/swap_heads.py --policy runs/example_refiner/policy_diffusion --data runs/example_refiner/data

The policy folder holds an AE with its diffusion head (a refiner around the AE's MLP head). The
same AE is evaluated with that head and with the MLP head underneath it (`with_head(ae, "mlp")`):
open loop on the test-split demonstrations, closed loop in the embedded world on test-split seeds.
The diffusion head samples: its noise comes from the sampling seed, so it gets a few of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="a policy folder with a diffusion head")
    parser.add_argument(
        "--data", default=None, help="dataset root with test/ (open loop); omit for closed loop only"
    )
    parser.add_argument("--scenarios", nargs="+", default=["highway", "merge"])
    parser.add_argument("--episodes", type=int, default=3, help="closed-loop episodes per scenario")
    parser.add_argument("--sampling-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--duration-s",
        type=float,
        default=None,
        help="closed-loop episode length (default: each scenario's own)",
    )
    args = parser.parse_args(argv)

    from driving import build_scenario, split_seeds
    from mot.runtime import FastSlowPlanner
    from training.evaluate import evaluate_closed_loop, evaluate_open_loop
    from training.policy import load_pretrained, with_head

    seeds = split_seeds("test", args.episodes)
    over = {} if args.duration_s is None else {"duration_s": args.duration_s}
    scenarios = [build_scenario(name, **over) for name in args.scenarios]  # checks the names and the length
    rows = {}
    for head in ("diffusion", "mlp"):
        backbone = load_pretrained(Path(args.policy))
        if backbone.ae.config.head != "diffusion":
            raise ValueError(
                f"--policy: expected a policy with a diffusion head, got {backbone.ae.config.head!r}"
            )
        if head == "mlp":
            with_head(backbone.ae, "mlp")  # the same AE weights, the MLP head under the refiner
        for sampling_seed in args.sampling_seeds if head == "diffusion" else args.sampling_seeds[:1]:
            row = {}
            if args.data:
                ol = evaluate_open_loop(backbone, str(Path(args.data) / "test"), sampling_seed=sampling_seed)
                row.update(l2_avg=ol["l2_avg_stp3"], collision=ol["collision_avg_stp3"])
            planner = FastSlowPlanner(backbone, refresh_every=2, seed=sampling_seed)
            cl = evaluate_closed_loop(planner, scenarios, seeds)
            row.update(ds=cl["ds"], sr=cl["sr"], route_completion=cl["route_completion"])
            rows[(head, sampling_seed)] = row

    print(
        f"{'head':<10} {'sampling seed':>13} {'L2 avg (m)':>10} {'coll. %':>7} {'DS':>6} {'SR %':>5} {'RC %':>5}"
    )
    for (head, s), r in rows.items():
        l2 = f"{r['l2_avg']:10.3f}" if "l2_avg" in r else f"{'–':>10}"
        coll = f"{100 * r['collision']:7.2f}" if "collision" in r else f"{'–':>7}"
        print(f"{head:<10} {s:>13} {l2} {coll} {r['ds']:6.1f} {r['sr']:5.1f} {r['route_completion']:5.1f}")
    print(
        f"{len(args.scenarios)} scenario(s) x {args.episodes} test episode(s) per run; the MLP head is deterministic "
        "(one sampling seed). For a comparison worth trusting, run a study: examples/variance_study.py"
    )
    return rows


if __name__ == "__main__":
    main()
