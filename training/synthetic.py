"""A synthetic trajectory task for comparing planning heads without a simulator.

Each sample is a constant-curvature, constant-acceleration manoeuvre (speed v0, acceleration a,
curvature k). The expert plan is its exact future: 6 waypoints at 0.5 s and 20 route points 2 m
apart along the arc. The `ActionContext` is what a (fake) action expert would hand a head:

- plan_latents: a fixed random embedding of (v0, a, k) per query plus heavy noise, so the MLP head
  (which sees only these) can learn a coarse plan but not an exact one;
- bev_tokens: tokens that carry the curvature cleanly; decision_latents: the (a, k) regime;
- ego_state / ego_history: the exact speed, acceleration and yaw rate and the past path.

A head that also reads BEV, decisions and ego state (the diffusion head) can refine the MLP head's
coarse plan. The mapping is fixed by `task_seed`; samples are drawn from a `torch.Generator`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from automot import spec
from heads import DiffusionHead, build_head
from heads.types import ActionContext, ContextDims, PlanTarget
from training.functional import l2_summary


@dataclass
class SyntheticTask:
    dims: ContextDims
    task_seed: int = 0
    latent_noise: float = 0.5
    num_bev_tokens: int = 16

    def __post_init__(self) -> None:
        g = torch.Generator().manual_seed(self.task_seed)
        d = self.dims.latent_dim
        self._plan_proj = torch.randn(self.dims.num_queries, 3, d, generator=g) / 3**0.5
        self._bev_proj = torch.randn(self.num_bev_tokens, 1, d, generator=g)
        self._dec_proj = torch.randn(self.dims.num_decisions, 2, d, generator=g) / 2**0.5
        self._reason_proj = torch.randn(3, max(self.dims.reasoning_dim, 1), generator=g) / 3**0.5

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[ActionContext, PlanTarget]:
        g = generator
        v0 = 3.0 + 12.0 * torch.rand(batch_size, generator=g)
        acc = -2.0 + 4.0 * torch.rand(batch_size, generator=g)
        curv = -0.04 + 0.08 * torch.rand(batch_size, generator=g)
        params = torch.stack([(v0 - 9.0) / 6.0, acc / 2.0, curv / 0.04], dim=-1)  # (B, 3) ~ unit scale

        times = torch.tensor(spec.waypoint_times_s())
        s_wp = (v0[:, None] * times + 0.5 * acc[:, None] * times**2).clamp_min(
            0.0
        )  # arc length, no reversing
        waypoints = _arc(s_wp, curv)
        s_route = spec.ROUTE_SPACING_M * torch.arange(1, self.dims.num_route + 1, dtype=torch.float32).expand(
            batch_size, -1
        )
        route = _arc(s_route, curv)

        hist_t = -spec.HISTORY_DT_S * torch.arange(
            self.dims.history_len, 0, -1, dtype=torch.float32
        )  # oldest first
        s_hist = v0[:, None] * hist_t + 0.5 * acc[:, None] * hist_t**2
        hist_xy = _arc(s_hist, curv)
        hist_heading = s_hist * curv[:, None]
        hist_speed = v0[:, None] + acc[:, None] * hist_t
        history = torch.stack([hist_xy[..., 0], hist_xy[..., 1], hist_heading, hist_speed], dim=-1)
        ego_state = torch.stack([v0, acc, v0 * curv], dim=-1)

        def noise(*shape):
            return torch.randn(*shape, generator=g)

        b, d = batch_size, self.dims.latent_dim
        plan_latents = torch.einsum("bp,qpd->bqd", params, self._plan_proj) + self.latent_noise * noise(
            b, self.dims.num_queries, d
        )
        bev = torch.einsum("bp,npd->bnd", params[:, 2:], self._bev_proj) + 0.1 * noise(
            b, self.num_bev_tokens, d
        )
        decisions = torch.einsum("bp,kpd->bkd", params[:, 1:], self._dec_proj) + 0.1 * noise(
            b, self.dims.num_decisions, d
        )
        reasoning = None
        if self.dims.reasoning_dim:
            reasoning = (params @ self._reason_proj)[:, None, :] + 0.1 * noise(b, 4, self.dims.reasoning_dim)
        ctx = ActionContext(
            plan_latents=plan_latents,
            decision_latents=decisions,
            bev_tokens=bev,
            ego_state=ego_state,
            ego_history=history,
            reasoning_tokens=reasoning,
        )
        return ctx, PlanTarget(waypoints=waypoints, route=route)


def _arc(s: torch.Tensor, curv: torch.Tensor) -> torch.Tensor:
    """Points at arc length s (B, N) on circles of curvature curv (B,) starting at the origin heading +x."""
    k = curv[:, None]
    small = k.abs() < 1e-6
    k_safe = torch.where(small, torch.ones_like(k), k)
    x = torch.where(small, s, torch.sin(k_safe * s) / k_safe)
    y = torch.where(small, 0.5 * k * s**2, (1 - torch.cos(k_safe * s)) / k_safe)
    return torch.stack([x, y], dim=-1)


def train_head(head, task, seconds: float, seed: int, batch_size: int = 64, lr: float = 1e-3) -> int:
    """AdamW on head.loss for `seconds` of wall time; returns the number of steps taken."""
    g = torch.Generator().manual_seed(seed)
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    head.train()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        ctx, target = task.sample(batch_size, g)
        loss = head.loss(ctx, target)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        steps += 1
    return steps


@torch.no_grad()
def evaluate_head(head, task, seed: int, n: int = 512) -> dict[str, dict[str, float]]:
    head.eval()
    ctx, target = task.sample(n, torch.Generator().manual_seed(seed))
    plan = head(ctx, generator=torch.Generator().manual_seed(seed + 1))
    return {p: l2_summary(plan.waypoints, target.waypoints, p) for p in ("stp3", "uniad")}


def compare_heads(seconds: float = 30.0, seed: int = 0) -> dict[str, dict]:
    torch.manual_seed(seed)
    dims = ContextDims(latent_dim=64, reasoning_dim=32)
    task = SyntheticTask(dims, task_seed=seed)
    mlp = build_head("mlp", dims, hidden_dim=128)
    mlp_steps = train_head(mlp, task, seconds, seed + 1)
    diffusion = DiffusionHead.from_mlp_head(mlp, refiner={"dim": 128, "depth": 3, "moa": {"num_heads": 4}})
    diffusion_steps = train_head(diffusion, task, seconds, seed + 2)
    return {
        "mlp": {"steps": mlp_steps, **evaluate_head(mlp, task, seed + 100)},
        "diffusion": {"steps": diffusion_steps, **evaluate_head(diffusion, task, seed + 100)},
    }


def format_table(results: dict[str, dict]) -> str:
    lines = ["head        steps  protocol   L2@1s   L2@2s   L2@3s   L2avg   (metres, held-out synthetic set)"]
    for name, r in results.items():
        for protocol in ("stp3", "uniad"):
            m = r[protocol]
            lines.append(
                f"{name:<10} {r['steps']:>6}  {protocol:<8} {m['l2_1s']:7.3f} {m['l2_2s']:7.3f} {m['l2_3s']:7.3f} {m['l2_avg']:7.3f}"
            )
    return "\n".join(lines)
