"""Does the refiner refine? Prior vs refined plans of one trained policy on held-out data (issue 10).

For a policy whose head refines a prior (a head whose `Plan` carries `prior_waypoints`, e.g. the
diffusion head around the AE's MLP head), every test sample's action context is computed once and
then decoded under several sampler settings:

    prior                       the AE's coarse plan (what the refiner starts from)
    steps{n}_k1                 refined with n reverse steps, one sample
    steps{n}_k{K}_selected      K candidates, one chosen by the head's selection (`selection` names it)
    steps{n}_k{K}_oracle        the candidate closest to the expert (best-of-K: the value of sampling)

and with the Mixture-of-Attention's inputs knocked out at inference (bypass gates zeroed, reasoning
tokens zeroed, decision values scaled to zero), which shows what each path contributes to the trained
network. Every entry has L2 at 1/2/3 s (ST-P3 and UniAD), route L1 and the open-loop collision rate;
`ratio` is refined (defaults) / prior L2 avg (ST-P3), the headline. `step_differences` compares
every step count with the first one sample by sample (paired L2 avg difference, its 95 % t-interval):
"more steps do not make the plan worse" reads as an interval that does not lie above zero.

Axes: B batch, K candidates, Nw waypoints, Nr route points.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from training.functional import collision_per_horizon, l2_per_horizon

PROTOCOLS = ("stp3", "uniad")


def refines(head) -> bool:
    """True for a head that refines a prior of its own (its plans carry `prior_waypoints`)."""
    return hasattr(head, "prior") and hasattr(head, "denoiser")


def _metrics(waypoints: torch.Tensor, route: torch.Tensor, ref: dict) -> dict[str, float]:
    from driving.collision import plan_collisions

    out: dict[str, float] = {}
    for p in PROTOCOLS:
        per = l2_per_horizon(waypoints, ref["waypoints"], p).mean(0)
        suffix = "" if p == "stp3" else "_uniad"
        out.update({f"l2_{i + 1}s{suffix}": float(v) for i, v in enumerate(per)})
        out[f"l2_avg{suffix}"] = float(per.mean())
    out["route_l1"] = float((route - ref["route"]).abs().mean())
    collided = plan_collisions(waypoints, ref["agent_boxes"], ref["agent_mask"], ref["ego_size"])
    out["collision_avg"] = float(collision_per_horizon(collided, "stp3").mean())
    return out


def paired_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Per-sample values a, b (N,) of the same samples -> mean of a - b, its 95 % t-interval (the
    samples taken as independent; samples of one episode are correlated, so the interval is, if
    anything, too narrow) and the mean relative to b's mean."""
    from scipy import stats

    if a.shape != b.shape or a.dim() != 1 or a.numel() < 2:
        raise ValueError(
            f"a, b: expected two (N,) tensors with N >= 2, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    d = (a - b).double()
    mean, sem = float(d.mean()), float(d.std(unbiased=True)) / d.numel() ** 0.5
    half = float(stats.t.ppf(0.975, d.numel() - 1)) * sem
    return {
        "mean": mean,
        "ci95_low": mean - half,
        "ci95_high": mean + half,
        "relative": mean / float(b.mean()),
    }


def _oracle(samples_wp: torch.Tensor, samples_route: torch.Tensor, ref: dict):
    """The candidate closest to the expert (waypoint L1 + route L1): (B, K, ...) -> (B, ...)."""
    err = (samples_wp - ref["waypoints"][:, None]).abs().mean((-1, -2)) + (
        samples_route - ref["route"][:, None]
    ).abs().mean((-1, -2))
    idx = err.argmin(1)
    b = torch.arange(samples_wp.shape[0])
    return samples_wp[b, idx], samples_route[b, idx]


@contextlib.contextmanager
def knockout(head, what: str) -> Iterator[None]:
    """Temporarily switch one Mixture-of-Attention input off in a trained head (inference only).

    bypass: every bypass gate set to 0; decision: every decision lambda set to 0 (decision values
    vanish from the joint softmax's output); reasoning: handled by the caller (zeroed tokens)."""
    params = []
    for name, p in head.named_parameters():
        if (what == "bypass" and name.endswith(("gate_bev", "gate_reasoning"))) or (
            what == "decision" and name.endswith("decision_lambda")
        ):
            params.append((p, p.detach().clone()))
    with torch.no_grad():
        for p, _ in params:
            p.zero_()
    try:
        yield
    finally:
        with torch.no_grad():
            for p, saved in params:
                p.copy_(saved)


@torch.no_grad()
def collect_contexts(backbone, data_dirs, *, batch_size: int = 64) -> tuple[list, dict]:
    """Run the frozen backbone once over the data: (list of per-batch ActionContexts, labels dict)."""
    from driving.dataset import DrivingDataset, collate

    loader = DataLoader(DrivingDataset(data_dirs), batch_size=batch_size, shuffle=False, collate_fn=collate)
    backbone.ae.eval()
    contexts, labels = [], {"waypoints": [], "route": [], "agent_boxes": [], "agent_mask": [], "ego_size": []}
    for batch in loader:
        cache = backbone.prefill(batch.sensors)
        contexts.append(backbone.ae(batch.sensors, cache, with_plan=False).context)
        for k in labels:
            labels[k].append(getattr(batch, k))
    return contexts, labels


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    if parts[0].dim() >= 3 and parts[0].shape[0] and len({p.shape[2:] for p in parts}) > 1:
        # Agent tensors (B, Nw, A, ...) differ in A between batches: pad A.
        a = max(p.shape[2] for p in parts)
        parts = [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 3) + (0, a - p.shape[2])) for p in parts]
    return torch.cat(parts)


@torch.no_grad()
def evaluate_refinement(
    backbone,
    data_dirs,
    *,
    sampling_seed: int = 0,
    steps: tuple[int, ...] = (1, 2, 5),
    candidates: tuple[int, ...] = (8,),
    knockouts: bool = True,
    batch_size: int = 64,
) -> dict:
    """Prior vs refined metrics of `backbone`'s refining head on `data_dirs` (see the module docstring)."""
    head = backbone.ae.head
    head.eval()
    contexts, labels = collect_contexts(backbone, data_dirs, batch_size=batch_size)
    ref = {k: _cat(v) for k, v in labels.items()}

    def decode(**kwargs) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(sampling_seed)
        plans = [head(ctx, generator=g, **kwargs) for ctx in contexts]
        fields = ("waypoints", "route", "waypoint_samples", "route_samples", "prior_waypoints", "prior_route")
        return {
            f: torch.cat([getattr(p, f) for p in plans]) for f in fields if getattr(plans[0], f) is not None
        }

    default = decode()
    if "prior_waypoints" not in default:
        raise ValueError(
            f"head: expected a refining head (its Plan carries prior_waypoints), got {type(head).__name__}"
        )
    result: dict = {"samples": int(ref["waypoints"].shape[0]), "sampling_seed": sampling_seed}
    denoiser_config = getattr(getattr(head, "config", None), "denoiser", None)
    result["selection"] = getattr(denoiser_config, "selection", None)
    result["prior"] = _metrics(default["prior_waypoints"], default["prior_route"], ref)
    result["refined"] = _metrics(default["waypoints"], default["route"], ref)
    result["ratio"] = result["refined"]["l2_avg"] / result["prior"]["l2_avg"]
    result["route_ratio"] = result["refined"]["route_l1"] / result["prior"]["route_l1"]
    by_setting: dict[str, dict] = {}
    per_sample: dict[int, torch.Tensor] = {}
    for n in steps:
        plan = decode(num_steps=n, num_samples=1)
        by_setting[f"steps{n}_k1"] = _metrics(plan["waypoints"], plan["route"], ref)
        per_sample[n] = l2_per_horizon(plan["waypoints"], ref["waypoints"], "stp3").mean(1)
        for k in candidates:
            plan = decode(num_steps=n, num_samples=k)
            by_setting[f"steps{n}_k{k}_selected"] = _metrics(plan["waypoints"], plan["route"], ref)
            by_setting[f"steps{n}_k{k}_oracle"] = _metrics(
                *_oracle(plan["waypoint_samples"], plan["route_samples"], ref), ref
            )
    result["settings"] = by_setting
    if len(steps) > 1:
        first = steps[0]
        result["step_differences"] = {
            f"steps{n}_minus_steps{first}": paired_difference(per_sample[n], per_sample[first])
            for n in steps[1:]
        }
    if knockouts:
        result["knockouts"] = _knockouts(head, contexts, ref, decode)
    return result


def _knockouts(head, contexts: list, ref: dict, decode) -> dict[str, dict]:
    import dataclasses

    out = {}
    for what in ("bypass", "decision"):
        with knockout(head, what):
            plan = decode()
        out[f"no_{what}"] = _metrics(plan["waypoints"], plan["route"], ref)
    if contexts[0].reasoning_tokens is not None:
        saved = list(contexts)
        contexts[:] = [
            dataclasses.replace(c, reasoning_tokens=torch.zeros_like(c.reasoning_tokens)) for c in saved
        ]
        try:
            plan = decode()
        finally:
            contexts[:] = saved
        out["no_reasoning"] = _metrics(plan["waypoints"], plan["route"], ref)
    return out


def flat_summary(result: dict) -> dict[str, float]:
    """The numbers a study aggregates, as one flat dict: ratio, route_ratio, prior_*/refined_* L2 avg
    and route L1, and L2 avg for every sampler setting and knockout (keys like `steps5_k1_l2_avg`)."""
    out = {"ratio": result["ratio"], "route_ratio": result["route_ratio"]}
    for which in ("prior", "refined"):
        for key in ("l2_avg", "l2_3s", "l2_avg_uniad", "route_l1", "collision_avg"):
            out[f"{which}_{key}"] = result[which][key]
    for name, diff in result.get("step_differences", {}).items():
        out[f"{name}_l2_avg"] = diff["mean"]
        out[f"{name}_l2_avg_ci95_high"] = diff["ci95_high"]
    for group in ("settings", "knockouts"):
        for name, metrics in result.get(group, {}).items():
            out[f"{name}_l2_avg"] = metrics["l2_avg"]
            out[f"{name}_route_l1"] = metrics["route_l1"]
    return out
