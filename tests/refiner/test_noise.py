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
