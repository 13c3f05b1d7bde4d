import pytest
import torch

from heads import ActionContext, ContextDims, DiffusionHead, MLPHead, PlanTarget, available_heads, build_head
from tests.helpers import TINY_DIMS, TINY_REFINER, make_context, make_target, perturb_zero_init

HEAD_CONFIGS = {"mlp": {"hidden_dim": 32}, "diffusion": {"refiner": TINY_REFINER}}


def _build(name, dims=TINY_DIMS):
    return build_head(name, dims, **HEAD_CONFIGS.get(name, {}))


def test_known_heads_are_registered():
    assert {"mlp", "diffusion"} <= set(available_heads())


@pytest.mark.parametrize("name", available_heads())
def test_every_registered_head_plans_and_learns(name):
    torch.manual_seed(0)
    head = _build(name)
    perturb_zero_init(head)
    ctx, target = make_context(), make_target()
    plan = head(ctx, generator=torch.Generator().manual_seed(0))
    assert plan.waypoints.shape == (3, 6, 2) and plan.route.shape == (3, 20, 2)
    assert torch.isfinite(plan.waypoints).all() and torch.isfinite(plan.route).all()
    losses = head.loss(ctx, target)
    assert losses["loss"].dim() == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    trainable = [p for p in head.parameters() if p.requires_grad]
    assert trainable and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)
    # One optimiser step on the loss lowers it on the same batch.
    opt = torch.optim.SGD(trainable, lr=1e-3)
    before = head.loss(
        ctx, target, **({"generator": torch.Generator().manual_seed(1)} if name == "diffusion" else {})
    )["loss"]
    opt.zero_grad()
    before.backward()
    opt.step()
    after = head.loss(
        ctx, target, **({"generator": torch.Generator().manual_seed(1)} if name == "diffusion" else {})
    )["loss"]
    assert after < before


def test_mlp_route_is_the_cumulative_sum_of_predicted_steps():
    torch.manual_seed(0)
    head = _build("mlp")
    ctx = make_context()
    plan = head(ctx)
    steps = head.route_mlp(ctx.plan_latents[:, 6:]) * head.route_step_scale
    assert torch.allclose(plan.route, steps.cumsum(1))
    assert torch.allclose(plan.route[:, 1:] - plan.route[:, :-1], steps[:, 1:], atol=1e-5)


def test_mlp_waypoint_parametrisations_against_hand_computed_plans():
    """delta: the waypoints are the running sum of the per-interval outputs; cv_residual: an output of
    zero is the constant-velocity plan (speed x t straight ahead)."""
    ctx = make_context()
    absolute = build_head("mlp", TINY_DIMS, hidden_dim=32)
    delta = build_head("mlp", TINY_DIMS, hidden_dim=32, waypoint_mode="delta")
    delta.load_state_dict(absolute.state_dict())
    torch.testing.assert_close(delta(ctx).waypoints, absolute(ctx).waypoints.cumsum(1))
    torch.testing.assert_close(delta(ctx).route, absolute(ctx).route)
    residual = build_head("mlp", TINY_DIMS, hidden_dim=32, cv_residual=True)
    with torch.no_grad():
        residual.waypoint_mlp[-1].weight.zero_()
        residual.waypoint_mlp[-1].bias.zero_()
    speed = ctx.ego_state[:, 0]
    times = torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    expected = torch.stack([speed[:, None] * times, torch.zeros(3, 6)], dim=-1)
    torch.testing.assert_close(residual(ctx).waypoints, expected)
    with pytest.raises(ValueError, match=r"MLPHeadConfig\.waypoint_mode"):
        build_head("mlp", TINY_DIMS, waypoint_mode="spline")


def test_mlp_waypoint_weights_are_applied():
    head = _build("mlp")
    target = make_target()
    # An error only on the first waypoint (weight 3 of 12) vs only on the last (weight 1 of 12).
    from heads.mlp import weighted_waypoint_l1

    first, last = target.waypoints.clone(), target.waypoints.clone()
    first[:, 0, 0] += 1.2  # mean over (x, y) of this point: 0.6
    last[:, -1, 1] += 1.2
    w = head.waypoint_weights
    assert torch.isclose(weighted_waypoint_l1(first, target.waypoints, w), torch.tensor(3 / 12 * 0.6))
    assert torch.isclose(weighted_waypoint_l1(last, target.waypoints, w), torch.tensor(1 / 12 * 0.6))


def test_same_generator_same_plan_other_seed_other_plan():
    torch.manual_seed(0)
    head = _build("diffusion")
    perturb_zero_init(head)
    ctx = make_context()
    a = head(ctx, generator=torch.Generator().manual_seed(3))
    b = head(ctx, generator=torch.Generator().manual_seed(3))
    c = head(ctx, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.waypoints, b.waypoints) and torch.equal(a.route, b.route)
    assert not torch.allclose(a.waypoints, c.waypoints)
    # No generator: the head's own default seed, so still reproducible.
    assert torch.equal(head(ctx).waypoints, head(ctx).waypoints)
    mlp = _build("mlp")
    assert torch.equal(mlp(ctx, generator=torch.Generator().manual_seed(3)).waypoints, mlp(ctx).waypoints)


@pytest.mark.parametrize("name", available_heads())
def test_is_stochastic_says_whether_the_sampling_seed_changes_the_plan(name):
    """Studies run a head with `is_stochastic = False` under one sampling seed only: its plan must not
    depend on the generator, and a stochastic head's must."""
    torch.manual_seed(0)
    head = _build(name)
    perturb_zero_init(head)
    ctx = make_context()
    a = head(ctx, generator=torch.Generator().manual_seed(3))
    b = head(ctx, generator=torch.Generator().manual_seed(4))
    same = torch.equal(a.waypoints, b.waypoints) and torch.equal(a.route, b.route)
    assert same != type(head).is_stochastic


def test_num_samples_returns_candidates_and_a_chosen_plan():
    torch.manual_seed(0)
    head = _build("diffusion")
    perturb_zero_init(head)
    plan = head(make_context(), generator=torch.Generator().manual_seed(0), num_samples=5)
    assert plan.waypoint_samples.shape == (3, 5, 6, 2) and plan.route_samples.shape == (3, 5, 20, 2)
    assert plan.prior_waypoints.shape == (3, 6, 2)
    # The chosen plan (medoid) is one of the candidates.
    match = (plan.waypoint_samples == plan.waypoints[:, None]).flatten(2).all(-1)
    assert bool(match.any(1).all())
    # Candidates differ from each other (independent perturbations).
    assert not torch.allclose(plan.waypoint_samples[:, 0], plan.waypoint_samples[:, 1])


@pytest.mark.parametrize("noise", ["multiplicative", "additive", "diffusiondrive_v2"])
@pytest.mark.parametrize("num_steps", [1, 2, 5])
def test_a_zero_correction_network_returns_the_prior_exactly(noise, num_steps):
    """At init the refiner's correction is zero (AdaLN-Zero, zero final layer): the sampler must then
    return the prior it was given, with no trace of the start perturbation, for every noise model."""
    torch.manual_seed(0)
    head = build_head(
        "diffusion",
        TINY_DIMS,
        refiner=TINY_REFINER,
        denoiser={"noise": noise, "schedule": {"num_steps": num_steps}},
    )
    plan = head(make_context(), num_samples=3)
    assert torch.allclose(
        plan.waypoint_samples, plan.prior_waypoints[:, None].expand_as(plan.waypoint_samples), atol=1e-5
    )
    assert torch.allclose(plan.route, plan.prior_route, atol=1e-5)


def test_diffusion_head_wraps_a_trained_mlp_head_and_shares_its_weights():
    torch.manual_seed(0)
    mlp = _build("mlp")
    head = DiffusionHead.from_mlp_head(mlp, refiner=TINY_REFINER)
    assert head.prior is mlp
    ctx = make_context()
    assert torch.equal(head(ctx).prior_waypoints, mlp(ctx).waypoints)
    with pytest.raises(ValueError, match="mlp_head: expected an MLPHead"):
        DiffusionHead.from_mlp_head(head)


@pytest.mark.parametrize("differentiable", [False, True])
def test_differentiable_prior_switch(differentiable):
    torch.manual_seed(0)
    head = build_head(
        "diffusion",
        TINY_DIMS,
        refiner=TINY_REFINER,
        differentiable_prior=differentiable,
        prior_loss_weight=0.0,
    )
    perturb_zero_init(head.denoiser.network)
    ctx = make_context()
    ctx.plan_latents.requires_grad_(True)
    head.loss(ctx, make_target())["loss"].backward()
    prior_grads = [p.grad for p in head.prior.parameters()]
    if differentiable:
        assert all(p.requires_grad for p in head.prior.parameters())
        assert any(g is not None and g.abs().sum() > 0 for g in prior_grads)
    else:
        assert not any(p.requires_grad for p in head.prior.parameters())
        assert all(g is None for g in prior_grads)
    # Either way the refiner is trained and the context receives gradient through it.
    assert ctx.plan_latents.grad is not None and ctx.plan_latents.grad.abs().sum() > 0


def test_prior_loss_requires_a_trainable_prior():
    with pytest.raises(ValueError, match="prior_loss_weight: expected 0 when differentiable_prior=False"):
        build_head("diffusion", TINY_DIMS, prior_loss_weight=1.0)
    head = build_head(
        "diffusion", TINY_DIMS, refiner=TINY_REFINER, differentiable_prior=True, prior_loss_weight=0.5
    )
    out = head.loss(make_context(), make_target())
    score = 0.1 * out["score_l1"]  # make_target carries no agents: no collision part
    assert "score_collision" not in out
    assert "prior_loss" in out and torch.isclose(
        out["loss"], out["waypoint_l1"] + out["route_l1"] + 0.5 * out["prior_loss"] + score
    )


def test_unknown_head_and_unknown_config_field():
    with pytest.raises(
        ValueError, match=r"unknown planning head 'transformer'; expected one of \[.*'diffusion'.*'mlp'"
    ):
        build_head("transformer", TINY_DIMS)
    with pytest.raises(ValueError, match=r"DiffusionHeadConfig: unknown field\(s\) \['steps'\]"):
        build_head("diffusion", TINY_DIMS, steps=3)
    with pytest.raises(ValueError, match=r"MLPHeadConfig.hidden_dim"):
        build_head("mlp", TINY_DIMS, hidden_dim=0)
    with pytest.raises(ValueError, match=r"ContextDims.latent_dim: expected an int >= 1, got 0"):
        ContextDims(latent_dim=0)


@pytest.mark.parametrize("name", ["mlp", "diffusion"])
def test_bad_context_raises_naming_the_field(name):
    head = _build(name)
    ctx = make_context()
    bad = ActionContext(**{**ctx.__dict__, "plan_latents": ctx.plan_latents[:, :25]})
    with pytest.raises(
        ValueError, match=r"ActionContext.plan_latents: expected shape \(B, 26, D_ae\), got \(3, 25, 32\)"
    ):
        head(bad)
    nan = ctx.bev_tokens.clone()
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"ActionContext.bev_tokens: expected finite values, got 1 NaN/Inf"):
        head(ActionContext(**{**ctx.__dict__, "bev_tokens": nan}))
    inf_state = ctx.ego_state.clone()
    inf_state[1, 0] = float("inf")
    with pytest.raises(ValueError, match=r"ActionContext.ego_state: expected finite values"):
        head(ActionContext(**{**ctx.__dict__, "ego_state": inf_state}))
    with pytest.raises(
        ValueError, match=r"ActionContext.ego_history: expected shape \(B, 4, 4\), got \(3, 3, 4\)"
    ):
        head(ActionContext(**{**ctx.__dict__, "ego_history": ctx.ego_history[:, 1:]}))
    with pytest.raises(
        ValueError, match=r"ActionContext.decision_latents: expected shape \(B, 3, D_ae\) with D_ae=32"
    ):
        head(ActionContext(**{**ctx.__dict__, "decision_latents": torch.zeros(3, 3, 31)}))
    with pytest.raises(ValueError, match=r"ActionContext.bev_mask: expected at least one valid"):
        head(ActionContext(**{**ctx.__dict__, "bev_mask": torch.zeros(3, 16, dtype=torch.bool)}))
    target = make_target()
    with pytest.raises(
        ValueError, match=r"PlanTarget.route: expected shape \(B, 20, 2\) with B=3, got \(2, 20, 2\)"
    ):
        head.loss(ctx, PlanTarget(target.waypoints, target.route[:2]))


def test_diffusion_head_requires_reasoning_tokens_when_built_for_them():
    head = _build("diffusion")
    ctx = make_context()
    with pytest.raises(ValueError, match=r"ActionContext.reasoning_tokens: expected a tensor \(B, S, 24\)"):
        head(ActionContext(**{**ctx.__dict__, "reasoning_tokens": None, "reasoning_mask": None}))


def test_mlp_head_rejects_wrong_number_of_waypoint_weights():
    with pytest.raises(ValueError, match=r"waypoint_weights: expected 6 weights"):
        MLPHead(TINY_DIMS, waypoint_weights=(1.0, 1.0))


@pytest.mark.parametrize("unroll", [2, 3])
def test_unrolled_training_runs_the_samplers_own_chain(unroll):
    """`train_unroll=n` scores the network on the samples the n-step sampler visits: every network
    input after the first is the noise model's reverse step from the previous one (detached), on the
    sampler's trailing grid, and equals what `denoise` feeds the network from the same start."""
    torch.manual_seed(0)
    # DDPM's grid takes any trailing stride (DDIM's needs it to divide T): every training start can
    # be replayed by the sampler. The multiplicative noise model's reverse step is its own either way.
    denoiser = {"train_unroll": unroll, "schedule": {"scheduler": "ddpm"}}
    head = build_head("diffusion", TINY_DIMS, refiner=TINY_REFINER, denoiser=denoiser)
    perturb_zero_init(head.denoiser.network)
    den, ctx = head.denoiser, make_context()
    calls = []
    forward = den.network.forward_with_score

    def recording(x, t, memory):
        calls.append((x.detach().clone(), t.clone(), x.requires_grad))
        return forward(x, t, memory)

    den.network.forward_with_score = recording
    prior = head.prior(ctx)
    train = den.training_prediction(
        prior.waypoints, prior.route, head.encode(ctx), torch.Generator().manual_seed(5)
    )
    assert len(train.estimates) == unroll == len(calls)
    t_start = int(calls[0][1][0])
    assert (t_start + 1) % unroll == 0 and t_start < den.config.schedule.train_t_max
    stride = (t_start + 1) // unroll
    assert [int(c[1][0]) for c in calls] == [t_start - i * stride for i in range(unroll)]
    assert not any(c[2] for c in calls[1:])  # the chain between steps is detached
    # Every estimate is a regression target of the loss (the chain's samples are not the prior).
    assert all(torch.isfinite(wp).all() and wp.requires_grad for wp, _ in train.estimates)
    # The sampler from the same start sample meets the same inputs.
    training_inputs = [c[0] for c in calls]
    calls.clear()
    memory = head.encode(ctx).with_anchor(den.normalize(prior.waypoints, prior.route))
    with torch.no_grad():
        den.denoise(training_inputs[0], memory, t_start, unroll, torch.Generator().manual_seed(0))
    assert len(calls) == unroll
    for seen_in_training, seen_by_sampler in zip(training_inputs, (c[0] for c in calls)):
        torch.testing.assert_close(seen_in_training, seen_by_sampler, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(training_inputs[0], training_inputs[1])
