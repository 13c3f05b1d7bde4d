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

    out = reverse_process(scheduler, x_t, oracle, generator=g)
    assert calls == truncated_timesteps(19, num_steps, 1000, needs_uniform_grid=True)
    assert torch.allclose(out, x0, atol=1e-5)


def test_a_wrong_predictor_does_not_recover_ground_truth():
    scheduler = build_scheduler(ScheduleConfig())
    x0 = torch.ones(2, 26, 2)
    set_truncated_timesteps(scheduler, 19, 2)
    out = reverse_process(scheduler, x0 * 1.1, lambda x, t: x0 * 0.9, generator=None)
    assert not torch.allclose(out, x0, atol=1e-2)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"ScheduleConfig.scheduler: expected one of .*'ddim'.*got 'pndm'"):
        ScheduleConfig(scheduler="pndm")
    with pytest.raises(ValueError, match=r"train_t_max"):
        ScheduleConfig(train_t_max=0)
    with pytest.raises(ValueError, match=r"t_start"):
        ScheduleConfig(t_start=20, num_steps=2)
