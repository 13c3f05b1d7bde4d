import math

import pytest
import torch
from torch import nn

from training.optim import OptimConfig, ParameterEMA, build_optimizer, param_groups, warmup_cosine


def test_warmup_then_cosine_by_hand():
    kw = {"warmup_steps": 10, "max_steps": 110, "min_lr_ratio": 0.1}
    assert warmup_cosine(0, **kw) == 0.1 and warmup_cosine(9, **kw) == 1.0
    assert warmup_cosine(10, **kw) == 1.0
    assert math.isclose(warmup_cosine(60, **kw), 0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert math.isclose(warmup_cosine(110, **kw), 0.1) and math.isclose(warmup_cosine(500, **kw), 0.1)


def test_weight_decay_only_on_matrices_and_frozen_parameters_excluded():
    net = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    net[2].requires_grad_(False)
    decay, no_decay = param_groups(net, 0.1)
    assert decay["params"] == [net[0].weight]
    assert set(map(id, no_decay["params"])) == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}
    net.requires_grad_(False)
    with pytest.raises(ValueError, match="expected trainable parameters, found none"):
        build_optimizer(net, OptimConfig())


def test_ema_tracks_the_average_and_swaps_back():
    torch.manual_seed(0)
    net = nn.Linear(2, 2)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    model = nn.ModuleDict({"net": net, "frozen": frozen})
    ema = ParameterEMA(model, decay=0.5)
    assert len(list(ema.buffers())) == 2 + 1  # weight, bias of the trainable layer + counter
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(model)  # decay = min(0.5, 2/11)
    d = 2 / 11
    assert torch.allclose(ema.shadow_0, d * start + (1 - d) * (start + 1.0))
    live = net.weight.detach().clone()
    with ema.swapped(model):
        assert torch.allclose(net.weight, ema.shadow_0)
    assert torch.equal(net.weight, live)


def test_config_validation():
    with pytest.raises(
        ValueError, match=r"OptimConfig.ema_decay: expected None or a value in \(0, 1\), got 1.5"
    ):
        OptimConfig(ema_decay=1.5)


def test_lr_scale_splits_the_groups_and_scales_the_first_adamw_update():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    groups = param_groups(net, 0.1, lambda name: 0.5 if name.startswith("0.") else 1.0, lr=2.0)
    by = {(g["lr"], g["weight_decay"]): g["params"] for g in groups}
    assert by == {
        (1.0, 0.1): [net[0].weight],
        (1.0, 0.0): [net[0].bias],
        (2.0, 0.1): [net[1].weight],
        (2.0, 0.0): [net[1].bias],
    }
    with pytest.raises(ValueError, match=r"lr_scale\('0.weight'\): expected a multiplier > 0, got 0.0"):
        param_groups(net, 0.1, lambda name: 0.0, lr=1.0)
    with pytest.raises(ValueError, match=r"param_groups: expected the base lr with an lr_scale, got lr=None"):
        param_groups(net, 0.1, lambda name: 1.0)
    # Adam's first step moves every weight by lr * (sign-like term + decay), so the scaled layer moves
    # by exactly the multiplier times what it moves without it.
    x = torch.randn(5, 3)
    deltas = []
    for scale in (1.0, 0.25):
        model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        model.load_state_dict(net.state_dict())
        opt = build_optimizer(
            model, OptimConfig(lr=1e-2), lambda n, s=scale: s if n.startswith("0.") else 1.0
        )
        model(x).square().sum().backward()
        opt.step()
        deltas.append({k: v - net.state_dict()[k] for k, v in model.state_dict().items()})
    plain, scaled = deltas
    assert torch.allclose(scaled["0.weight"], 0.25 * plain["0.weight"], rtol=1e-5, atol=1e-9)
    assert torch.equal(scaled["1.weight"], plain["1.weight"])
