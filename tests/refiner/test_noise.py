import pytest
import torch

from refiner.noise import AdditiveNoise, MultiplicativeNoise, build_noise_model
from refiner.schedule import ScheduleConfig, build_scheduler

SEGMENTS = (6, 20)


@pytest.fixture(scope="module")
def scheduler():
    return build_scheduler(ScheduleConfig())


def test_zero_trajectory_is_a_fixed_point(scheduler):
    noise = MultiplicativeNoise()
    x0 = torch.zeros(5, 26, 2)
    t = torch.tensor([0, 10, 19, 40, 49])
    out = noise.perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(0))
    assert torch.equal(out, x0)


def test_factors_have_mean_one_and_std_sigma(scheduler):
    noise = MultiplicativeNoise(sigma_scale=1.0, sigma_min=0.04)
    n = 20000
    t = torch.full((n,), 40, dtype=torch.long)
    x0 = torch.ones(n, 26, 2)
    out = noise.perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(0))
    sigma = float((1 - scheduler.alphas_cumprod[40]).sqrt())
    assert sigma > 0.04  # not clipped at this t
    for seg in (out[:, :6], out[:, 6:]):
        # One factor per trajectory and axis, broadcast over its points.
        assert torch.equal(seg, seg[:, :1].expand_as(seg))
        factors = seg[:, 0]  # (n, 2)
        assert torch.allclose(factors.mean(0), torch.ones(2), atol=4 * sigma / n**0.5)
        assert torch.allclose(factors.std(0), torch.full((2,), sigma), rtol=0.03)
    # Longitudinal and lateral factors, and the two trajectories, are independent draws.
    assert abs(torch.corrcoef(torch.stack([out[:, 0, 0], out[:, 0, 1], out[:, 6, 0]]))[0, 1:]).max() < 0.05


def test_sigma_is_clipped_below_at_sigma_min(scheduler):
    noise = MultiplicativeNoise(sigma_min=0.05)
    t = torch.tensor([0, 1, 999])
    sigma = noise.sigma(t, scheduler)
    raw = (1 - scheduler.alphas_cumprod[t]).sqrt()
    assert raw[0] < 0.05 and torch.allclose(sigma[:2], torch.full((2,), 0.05))
    assert torch.allclose(sigma[2], raw[2])


def test_straight_ahead_stays_straight_and_forward(scheduler):
    noise = MultiplicativeNoise()
    n = 4000
    x0 = torch.zeros(n, 26, 2)
    x0[..., 0] = torch.linspace(0.1, 5.0, 26)  # straight ahead: forward only
    t = torch.full((n,), 49, dtype=torch.long)
    out = noise.perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(1))
    assert torch.equal(out[..., 1], torch.zeros(n, 26))  # no sideways component appears
    sigma = float(noise.sigma(t[:1], scheduler))
    # A sign flip needs a factor below zero, i.e. eps < -1/sigma (about -5.9 sigma here): none in 8000 draws.
    assert 1 / sigma > 5
    assert bool((out[..., 0] > 0).all())
    # Ordering of the points along each trajectory is preserved (its factor is shared by its points).
    for seg in (out[:, :6, 0], out[:, 6:, 0]):
        assert bool((seg[:, 1:] > seg[:, :-1]).all())


def test_additive_matches_the_scheduler_forward_process(scheduler):
    x0 = torch.randn(4, 26, 2, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 5, 30, 49])
    out = AdditiveNoise().perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(7))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7))
    a = scheduler.alphas_cumprod[t][:, None, None]
    assert torch.allclose(out, a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-6)


def test_same_generator_same_noise_other_seed_other_noise(scheduler):
    noise = MultiplicativeNoise()
    x0, t = torch.ones(2, 26, 2), torch.tensor([19, 19])
    a = noise.perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(5))
    b = noise.perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(5))
    c = noise.perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_registry_and_bad_input(scheduler):
    with pytest.raises(ValueError, match=r"unknown noise model 'gaussian'.*additive.*multiplicative"):
        build_noise_model("gaussian")
    with pytest.raises(ValueError, match=r"sigma_min"):
        build_noise_model("multiplicative", sigma_min=-1.0)
    with pytest.raises(ValueError, match=r"x0: expected shape \(B, 26, 2\), got \(2, 25, 2\)"):
        MultiplicativeNoise().perturb(torch.ones(2, 25, 2), torch.tensor([1, 1]), scheduler, SEGMENTS, None)
    bad = torch.ones(2, 26, 2)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x0: expected finite values"):
        MultiplicativeNoise().perturb(bad, torch.tensor([1, 1]), scheduler, SEGMENTS, None)


# -- reverse steps ---------------------------------------------------------------------------------


def test_multiplicative_step_with_the_true_x0_lands_on_the_forward_marginal(scheduler):
    """x_t = x0 (1 + sigma_t eps) and an exact x0_hat: one deterministic step gives x0 (1 + sigma_t' eps)
    with the same eps, and the step to t' = -1 gives x0."""
    noise = MultiplicativeNoise()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 26, 2, generator=g) * 3
    t = torch.full((6,), 19, dtype=torch.long)
    x_t = noise.perturb(x0, t, scheduler, SEGMENTS, torch.Generator().manual_seed(5))
    eps = (x_t / x0 - 1) / noise.sigma(t, scheduler)[:, None, None]
    x_9 = noise.step(x_t, x0, 19, 9, scheduler, SEGMENTS, None)
    sigma_9 = noise.sigma(torch.tensor([9]), scheduler)
    assert torch.allclose(x_9, x0 * (1 + sigma_9 * eps), atol=1e-5)
    assert torch.allclose(noise.step(x_9, x0, 9, -1, scheduler, SEGMENTS, None), x0)


def test_multiplicative_step_noise_is_per_trajectory_and_axis(scheduler):
    """eta > 0 adds c * x0_hat * eps' with one (lon, lat) pair per trajectory; eta = 0 adds nothing."""
    noise = MultiplicativeNoise()
    n = 20000
    x0 = torch.ones(n, 26, 2)
    quiet = noise.step(x0, x0, 49, 19, scheduler, SEGMENTS, torch.Generator().manual_seed(0), eta=0.0)
    assert torch.equal(quiet, x0)
    noisy = noise.step(x0, x0, 49, 19, scheduler, SEGMENTS, torch.Generator().manual_seed(0), eta=1.0)
    s49, s19 = (float(noise.sigma(torch.tensor([t]), scheduler)) for t in (49, 19))
    c = s19 * (1 - s19**2 / s49**2) ** 0.5
    for seg in (noisy[:, :6], noisy[:, 6:]):
        assert torch.equal(seg, seg[:, :1].expand_as(seg))
        assert torch.allclose(seg[:, 0].mean(0), torch.ones(2), atol=4 * c / n**0.5)
        assert torch.allclose(seg[:, 0].std(0), torch.full((2,), c), rtol=0.03)


def test_v2_step_noise_is_multiplicative_with_the_floor_and_zero_without_eta():
    """DiffusionDriveV2: x_t' = mu * (1 + s * eps') with s = max(eta * std_DDIM, 0.04), one factor per
    trajectory and axis; with eta = 0 the step is plain deterministic DDIM (diffusers' own step)."""
    scheduler = build_scheduler(ScheduleConfig())
    noise = build_noise_model("diffusiondrive_v2")
    g = torch.Generator().manual_seed(0)
    x0_hat = torch.randn(4, 26, 2, generator=g)
    x_t = noise.perturb(x0_hat, torch.full((4,), 19), scheduler, SEGMENTS, g)
    mu = noise.step(x_t, x0_hat, 19, 9, scheduler, SEGMENTS, None, eta=0.0)
    ddim = build_scheduler(ScheduleConfig())
    from refiner.schedule import set_truncated_timesteps

    set_truncated_timesteps(ddim, 19, 2)
    assert torch.allclose(mu, ddim.step(x0_hat, 19, x_t, eta=0.0).prev_sample, atol=1e-6)

    n = 20000
    ones = torch.ones(n, 26, 2)
    a = scheduler.alphas_cumprod
    std = float(((1 - a[9]) / (1 - a[19]) * (1 - a[19] / a[9])).sqrt())
    for eta, expected in ((1.0, max(std, 0.04)), (0.2, max(0.2 * std, 0.04))):
        # x_t = x0_hat = 1 makes the DDIM mean a constant m (computed by hand); the output is m * factor.
        std_t = eta * std
        eps_hat = (1 - a[19].sqrt()) / (1 - a[19]).sqrt()
        m = a[9].sqrt() + (1 - a[9] - std_t**2).sqrt() * eps_hat
        out = noise.step(ones, ones, 19, 9, scheduler, SEGMENTS, torch.Generator().manual_seed(1), eta=eta)
        factors = out / m
        for seg in (factors[:, :6], factors[:, 6:]):
            assert torch.allclose(seg, seg[:, :1].expand_as(seg))
            assert torch.allclose(seg[:, 0].mean(0), torch.ones(2), atol=4 * expected / n**0.5)
            assert torch.allclose(seg[:, 0].std(0), torch.full((2,), expected), rtol=0.03)
