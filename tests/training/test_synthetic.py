"""The synthetic head-comparison task (examples/synthetic_heads.py): geometry of its targets, and the
comparison runs end to end."""

import math

import torch

from heads import ContextDims
from training.synthetic import SyntheticTask, compare_heads, format_table


def test_targets_follow_the_sampled_manoeuvre():
    task = SyntheticTask(ContextDims(latent_dim=16, reasoning_dim=8))
    ctx, target = task.sample(64, torch.Generator().manual_seed(0))
    # Route points are 2 m apart along the arc: chords slightly shorter than 2 m, never longer.
    steps = (target.route[:, 1:] - target.route[:, :-1]).norm(dim=-1)
    assert bool((steps <= 2.0 + 1e-4).all()) and bool((steps > 1.95).all())
    # The first waypoint is at 0.5 s: about v0 * 0.5 m ahead (acceleration adds at most 0.25 m).
    v0 = ctx.ego_state[:, 0]
    dist = target.waypoints[:, 0].norm(dim=-1)
    assert torch.allclose(dist, v0 * 0.5, atol=0.26)
    # Yaw rate = v0 * curvature, and the path bends towards its sign (y > 0 for a left turn).
    curvature = ctx.ego_state[:, 2] / v0
    far = target.route[:, -1, 1]
    assert bool(((far > 0) == (curvature > 0))[curvature.abs() > 0.005].all())
    assert not math.isnan(float(ctx.plan_latents.std()))


def test_head_comparison_runs_and_prints_both_heads():
    results = compare_heads(seconds=0.5, seed=0)
    table = format_table(results)
    for head in ("mlp", "diffusion"):
        assert results[head]["steps"] > 0 and math.isfinite(results[head]["stp3"]["l2_avg"])
        assert head in table
