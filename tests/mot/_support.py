"""Helpers shared by the MoT tests: synthetic sensor batches and observations, fake UEs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from automot import spec
from automot.types import Observation, SensorBatch
from heads import HEADS, ActionContext, ContextDims, Plan, PlanningHead, PlanTarget, register_head

PROMPTS = ("turn left at the junction ahead", "stop", "keep lane and follow the car", "go")


def make_batch(
    b: int = 2,
    *,
    t: int = 2,
    v: int = 2,
    size: int = 32,
    bev_size: int = 32,
    seed: int = 0,
    prompts: tuple[str, ...] | None = None,
) -> SensorBatch:
    g = torch.Generator().manual_seed(seed)
    return SensorBatch(
        rgb_history=torch.randint(0, 256, (b, t, v, 3, size, size), generator=g, dtype=torch.uint8),
        rgb=torch.randint(0, 256, (b, 3, size, size), generator=g, dtype=torch.uint8),
        bev=torch.rand(b, len(spec.BEV_CHANNELS), bev_size, bev_size, generator=g),
        ego_state=torch.randn(b, spec.EGO_STATE_DIM, generator=g),
        ego_history=torch.randn(b, spec.HISTORY_LEN, spec.HISTORY_DIM, generator=g),
        target_point=torch.randn(b, 2, generator=g) * 10,
        prompts=list(prompts if prompts is not None else PROMPTS[:b]),
    ).validate()


def make_observation(i: int, *, t: int = 2, v: int = 1, size: int = 32, dt: float = 0.2) -> Observation:
    r = np.random.RandomState(i)
    return Observation(
        rgb_history=r.randint(0, 256, (t, v, 3, size, size)).astype(np.uint8),
        rgb=r.randint(0, 256, (3, size, size)).astype(np.uint8),
        bev=r.rand(len(spec.BEV_CHANNELS), 32, 32).astype(np.float32),
        ego_state=r.randn(spec.EGO_STATE_DIM).astype(np.float32),
        ego_history=r.randn(spec.HISTORY_LEN, spec.HISTORY_DIM).astype(np.float32),
        target_point=(r.randn(2) * 10).astype(np.float32),
        prompt=PROMPTS[i % len(PROMPTS)],
        step=i,
        time_s=dt * i,
    )


class CountingUE:
    """Wraps a UE and counts prefill calls (and the steps they were made at)."""

    def __init__(self, ue) -> None:
        self.ue = ue
        self.steps: list[int] = []

    @property
    def geometry(self):
        return self.ue.geometry

    def prefill(self, batch, *, step=0, time_s=0.0, seed=None):
        self.steps.append(step)
        return self.ue.prefill(batch, step=step, time_s=time_s, seed=seed)


class FakeUE:
    """A UE of a given geometry whose cache tensors all equal the call number (its "generation").

    `gate`: when given, the build stops after the first layer until the gate is set, so a test can
    hold the worker in the middle of writing a cache; `gates` does the same for single calls. `fail_on`: call numbers that raise;
    `nan_on`: call numbers whose cache contains a NaN.
    """

    def __init__(self, geometry, *, seq_len: int = 5, gate=None, gates=None, fail_on=(), nan_on=()) -> None:
        import threading

        self.geometry = geometry
        self.seq_len = seq_len
        self.gate = gate
        self.gates = dict(gates or {})  # call number -> its own gate (in addition to `gate`)
        self.fail_on = set(fail_on)
        self.nan_on = set(nan_on)
        self.calls = 0
        self.in_build = threading.Event()

    def prefill(self, batch, *, step=0, time_s=0.0, seed=None):
        from mot import UECache

        self.calls += 1
        call = self.calls
        gen = float(call)
        g, b, s = self.geometry, batch.batch_size, self.seq_len
        keys, values = [], []
        for layer in range(g.num_layers):
            keys.append(torch.full((b, g.num_kv_heads, s, g.head_dim), gen))
            values.append(torch.full((b, g.num_kv_heads, s, g.head_dim), gen))
            for gate in (self.gate, self.gates.get(call)):
                if layer == 0 and gate is not None:
                    self.in_build.set()
                    if not gate.wait(timeout=30):
                        raise RuntimeError("FakeUE gate was never opened")
        if call in self.fail_on:  # after the gate: a test can make a held refresh fail late
            raise RuntimeError(f"fake UE failure on call {call}")
        if call in self.nan_on:
            values[-1][..., -1] = float("nan")
        return UECache(
            keys=tuple(keys),
            values=tuple(values),
            hidden=torch.full((b, s, g.hidden_size), gen),
            mask=torch.ones(b, s, dtype=torch.bool),
            position_offset=torch.full((b,), s, dtype=torch.long),
            step=step,
            time_s=time_s,
        )


def cache_generation_values(cache) -> set[float]:
    """Every distinct value in a FakeUE cache (one value = one generation)."""
    tensors = (*cache.keys, *cache.values, cache.hidden)
    return {float(v) for t in tensors for v in t.unique()}


class NoisyTestHead(PlanningHead):
    """A sampling test head that reads every `ActionContext` field and draws noise from the generator."""

    def __init__(self, dims: ContextDims, noise: float = 0.5) -> None:
        super().__init__()
        self.dims, self.noise = dims, noise
        d = dims.latent_dim
        self.plan = nn.Linear(d, 2)
        self.decision = nn.Linear(d, 2)
        self.bev = nn.Linear(d, 2)
        self.reasoning = nn.Linear(dims.reasoning_dim, 2)
        self.ego = nn.Linear(dims.ego_state_dim + dims.history_len * dims.history_dim, 2)

    @property
    def is_stochastic(self) -> bool:
        return True

    def forward(self, ctx: ActionContext, *, generator: torch.Generator | None = None) -> Plan:
        ctx.validate(self.dims)
        bev_w = torch.ones(ctx.bev_tokens.shape[:2]) if ctx.bev_mask is None else ctx.bev_mask.float()
        r_w = ctx.reasoning_mask.float()
        bev = (ctx.bev_tokens * bev_w[..., None]).sum(1) / bev_w.sum(1, keepdim=True)
        reasoning = (ctx.reasoning_tokens * r_w[..., None]).sum(1) / r_w.sum(1, keepdim=True)
        shift = (
            self.decision(ctx.decision_latents.mean(1))
            + self.bev(bev)
            + self.reasoning(reasoning)
            + self.ego(torch.cat((ctx.ego_state, ctx.ego_history.flatten(1)), -1))
        )
        out = self.plan(ctx.plan_latents) + shift[:, None]
        out = out + self.noise * torch.randn(out.shape, generator=generator)
        waypoints, route = out.split([self.dims.num_waypoints, self.dims.num_route], dim=1)
        return Plan(waypoints=waypoints, route=route)

    def loss(self, ctx: ActionContext, target: PlanTarget) -> dict[str, torch.Tensor]:
        plan = self(ctx)
        loss = (plan.waypoints - target.waypoints).abs().mean() + (plan.route - target.route).abs().mean()
        return {"loss": loss}


if "mot_test_noisy" not in HEADS:
    register_head("mot_test_noisy")(NoisyTestHead)
