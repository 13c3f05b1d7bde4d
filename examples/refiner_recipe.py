"""Refiner recipe search: train diffusion heads around one frozen action expert and compare them with
the prior they refine, on held-out data (the table of docs/refiner.md).

The frozen AE's action contexts are computed once per split; every variant (a set of DiffusionHead
overrides) then trains only its refiner on those contexts, so a variant costs what its refiner costs.
Per variant: refined L2 avg (ST-P3) after 1 / 2 / 5 reverse steps, the ratio to the prior's L2 at the
head's default step count, route L1 and the K = 8 selected candidate.

    python examples/refiner_recipe.py --policy runs/demo/seeds/0/policy_mlp \
        --train runs/demo/data/train --val runs/demo/data/val --steps 800 \
        --variant default='{}' --variant additive='{"denoiser": {"noise": "additive"}}'
"""

from __future__ import annotations

import argparse
import json

import torch

DEMO_REFINER = {"refiner": {"dim": 128, "depth": 3, "moa": {"num_heads": 4}}}


def _contexts(backbone, data: str):
    from training.context_memo import split_context
    from training.refine_eval import _cat, collect_contexts

    batches, labels = collect_contexts(backbone, data)
    contexts = [one for ctx in batches for one in split_context(ctx)]
    return contexts, {k: _cat(v) for k, v in labels.items()}


def _metrics(head, contexts, labels, *, steps: int | None, k: int, seed: int) -> dict[str, float]:
    from training.context_memo import stack_contexts
    from training.functional import l2_per_horizon

    g = torch.Generator().manual_seed(seed)
    wps, routes, priors, prior_routes = [], [], [], []
    with torch.no_grad():
        for i in range(0, len(contexts), 256):
            plan = head(stack_contexts(contexts[i : i + 256]), generator=g, num_samples=k, num_steps=steps)
            wps.append(plan.waypoints)
            routes.append(plan.route)
            priors.append(plan.prior_waypoints)
            prior_routes.append(plan.prior_route)
    wp, route = torch.cat(wps), torch.cat(routes)
    prior, prior_route = torch.cat(priors), torch.cat(prior_routes)
    return {
        "l2_avg": float(l2_per_horizon(wp, labels["waypoints"]).mean()),
        "route_l1": float((route - labels["route"]).abs().mean()),
        "prior_l2_avg": float(l2_per_horizon(prior, labels["waypoints"]).mean()),
        "prior_route_l1": float((prior_route - labels["route"]).abs().mean()),
    }


def train_variant(
    mlp_head, overrides: dict, contexts, labels, *, steps: int, lr: float, batch_size: int, seed: int
):
    """A diffusion head around `mlp_head` (frozen, weights shared) whose refiner is trained on the contexts."""
    from heads import PlanTarget
    from heads.diffusion import DiffusionHead
    from training.context_memo import stack_contexts
    from training.optim import OptimConfig, build_optimizer, build_scheduler

    torch.manual_seed(seed)
    head = DiffusionHead.from_mlp_head(mlp_head, **overrides)
    oc = OptimConfig(lr=lr, warmup_steps=min(50, steps // 4))
    opt = build_optimizer(head.denoiser, oc)
    schedule = build_scheduler(opt, oc, steps)
    g = torch.Generator().manual_seed(seed)
    n = len(contexts)
    head.denoiser.train()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch_size,), generator=g).tolist()
        target = PlanTarget(
            labels["waypoints"][idx],
            labels["route"][idx],
            agent_boxes=labels["agent_boxes"][idx],
            agent_mask=labels["agent_mask"][idx],
            ego_size=labels["ego_size"][idx],
        )
        loss = head.loss(stack_contexts([contexts[i] for i in idx]), target, generator=g)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.denoiser.parameters(), 1.0)
        opt.step()
        schedule.step()
    return head.eval()


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="a trained AE + MLP head policy folder (the prior)")
    parser.add_argument("--train", required=True, help="data folder the refiners train on")
    parser.add_argument("--val", required=True, help="held-out data folder they are compared on")
    parser.add_argument("--variant", action="append", default=None, metavar="NAME=JSON",
                        help="DiffusionHead overrides on top of the demo's refiner size (repeatable)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=1600, help="refiner training steps per variant")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from heads import MLPHead
    from training.policy import load_pretrained

    variants = {}
    for item in args.variant or ["default={}"]:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--variant: expected NAME=JSON, got {item!r}")
        overrides = json.loads(text)
        variants[name] = {**DEMO_REFINER, **overrides}
    backbone = load_pretrained(args.policy)
    mlp = backbone.ae.head
    if not isinstance(mlp, MLPHead):
        raise ValueError(
            f"--policy: expected a policy with the MLP head (the prior), got {type(mlp).__name__}"
        )
    train_ctx, train_labels = _contexts(backbone, args.train)
    val_ctx, val_labels = _contexts(backbone, args.val)
    results = {}
    print("| variant | refined L2 avg, 1 / 2 / 5 steps | ratio | route L1 (ratio) | K = 8 selected |")
    print("|---|---|---|---|---|")
    for name, overrides in variants.items():
        head = train_variant(mlp, overrides, train_ctx, train_labels, steps=args.steps, lr=args.lr,
                             batch_size=args.batch_size, seed=args.seed)  # fmt: skip
        by_steps = {n: _metrics(head, val_ctx, val_labels, steps=n, k=1, seed=args.seed) for n in (1, 2, 5)}
        default = _metrics(head, val_ctx, val_labels, steps=None, k=1, seed=args.seed)
        k8 = _metrics(head, val_ctx, val_labels, steps=None, k=8, seed=args.seed)
        r = {
            "overrides": overrides,
            "prior_l2_avg": default["prior_l2_avg"],
            "prior_route_l1": default["prior_route_l1"],
            "l2_avg": default["l2_avg"],
            "route_l1": default["route_l1"],
            "ratio": default["l2_avg"] / default["prior_l2_avg"],
            "route_ratio": default["route_l1"] / default["prior_route_l1"],
            "l2_avg_by_steps": {n: m["l2_avg"] for n, m in by_steps.items()},
            "k8_l2_avg": k8["l2_avg"],
        }
        results[name] = r
        steps = " / ".join(f"{r['l2_avg_by_steps'][n]:.4f}" for n in (1, 2, 5))
        print(
            f"| {name} | {steps} | {r['ratio']:.3f} | {r['route_l1']:.3f} ({r['route_ratio']:.2f}) | {r['k8_l2_avg']:.4f} |"
        )
    first = next(iter(results.values()))
    print(f"prior: L2 avg {first['prior_l2_avg']:.4f}, route L1 {first['prior_route_l1']:.4f}")
    return results


if __name__ == "__main__":
    main()
