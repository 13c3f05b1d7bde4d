import pytest
import torch

from refiner.noise import MultiplicativeNoise
from refiner.schedule import (
    ScheduleConfig,
    build_scheduler,
    reverse_process,
    set_truncated_timesteps,
    truncated_timesteps,
)


def test_truncated_grid():
    assert truncated_timesteps(19, 2, 1000, needs_uniform_grid=True) == [19, 9]
    assert truncated_timesteps(19, 5, 1000, needs_uniform_grid=True) == [19, 15, 11, 7, 3]
    assert truncated_timesteps(19, 1, 1000, needs_uniform_grid=True) == [19]
    with pytest.raises(ValueError, match=r"t_start: expected t_start \+ 1 to be a multiple of num_steps=3"):
        truncated_timesteps(19, 3, 1000, needs_uniform_grid=False)
    with pytest.raises(ValueError, match=r"stride .* must divide num_train_timesteps"):
        truncated_timesteps(20, 3, 1000, needs_uniform_grid=True)  # stride 7
    assert truncated_timesteps(20, 3, 1000, needs_uniform_grid=False) == [20, 13, 6]


@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpm_solver", "euler"])
@pytest.mark.parametrize("num_steps", [1, 2, 5, 10])
def test_scheduler_lands_on_the_grid(name, num_steps):
    scheduler = build_scheduler(ScheduleConfig(scheduler=name))
    set_truncated_timesteps(scheduler, 19, num_steps)
    assert [int(t) for t in scheduler.timesteps] == truncated_timesteps(
        19, num_steps, 1000, needs_uniform_grid=True
    )


@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpm_solver", "euler"])
@pytest.mark.parametrize("num_steps", [1, 2, 5])
def test_oracle_x0_predictor_recovers_ground_truth(name, num_steps):
    """A network that always answers the true x0 must make the truncated reverse process return x0."""
    scheduler = build_scheduler(ScheduleConfig(scheduler=name, eta=0.0))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 26, 2, generator=g) * 3
    t = torch.full((4,), 19, dtype=torch.long)
    x_t = MultiplicativeNoise().perturb(x0, t, scheduler, (6, 20), g)
    assert not torch.allclose(x_t, x0)
    set_truncated_timesteps(scheduler, 19, num_steps)
    calls = []

    def oracle(x, tt):
        calls.append(int(tt[0]))
        return x0

    noise = MultiplicativeNoise()
    out = reverse_process(
        scheduler, x_t, oracle, step=lambda x, x0h, tt, tp: noise.step(x, x0h, tt, tp, scheduler, (6, 20), g)
    )
    assert calls == truncated_timesteps(19, num_steps, 1000, needs_uniform_grid=True)
    assert torch.allclose(out, x0, atol=1e-5)


def test_a_wrong_predictor_does_not_recover_ground_truth():
    scheduler = build_scheduler(ScheduleConfig())
    x0 = torch.ones(2, 26, 2)
    set_truncated_timesteps(scheduler, 19, 2)
    noise = MultiplicativeNoise()
    out = reverse_process(
        scheduler,
        x0 * 1.1,
        lambda x, t: x0 * 0.9,
        step=lambda x, x0h, tt, tp: noise.step(x, x0h, tt, tp, scheduler, (6, 20), None),
    )
    assert not torch.allclose(out, x0, atol=1e-2)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"ScheduleConfig.scheduler: expected one of .*'ddim'.*got 'pndm'"):
        ScheduleConfig(scheduler="pndm")
    with pytest.raises(ValueError, match=r"train_t_max"):
        ScheduleConfig(train_t_max=0)
    with pytest.raises(ValueError, match=r"t_start"):
        ScheduleConfig(t_start=20, num_steps=2)


class _Oracle(torch.nn.Module):
    """A refiner network that always answers the expert plan (normalised)."""

    segments = (6, 20)

    def __init__(self, x0: torch.Tensor) -> None:
        super().__init__()
        self.x0 = x0

    def forward_with_score(self, x, t, memory):
        return self.x0.repeat_interleave(x.shape[0] // self.x0.shape[0], dim=0), None


@pytest.mark.parametrize("noise", ["multiplicative", "additive", "diffusiondrive_v2"])
@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpm_solver", "euler"])
@pytest.mark.parametrize("num_steps", [1, 2, 5])
def test_every_noise_model_and_scheduler_returns_the_oracle_plan(noise, name, num_steps):
    from refiner.denoiser import DenoiserConfig, TruncatedDenoiser
    from refiner.model import RefinerMemory

    g = torch.Generator().manual_seed(0)
    expert = torch.randn(2, 26, 2, generator=g) * 3
    config = DenoiserConfig(schedule=ScheduleConfig(scheduler=name, num_steps=num_steps), noise=noise)
    denoiser = TruncatedDenoiser(_Oracle(expert), config)
    prior = expert + torch.randn(2, 26, 2, generator=g)  # a wrong prior
    wp, route = denoiser.denormalize(prior)
    memory = RefinerMemory(blocks=[], ego=torch.zeros(2, 1), plan_latents=None)
    out = denoiser.sample(wp, route, memory, g, num_samples=3)
    want_wp, want_route = denoiser.denormalize(expert)
    assert torch.allclose(out.waypoint_samples, want_wp[:, None].expand_as(out.waypoint_samples), atol=1e-4)
    assert torch.allclose(out.route, want_route, atol=1e-4)
