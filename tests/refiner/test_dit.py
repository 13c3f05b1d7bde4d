import pytest
import torch

from moa import MoAConfig
from refiner.dit import DiTBlock, FinalLayer, modulate
from refiner.model import RefinerConfig, TrajectoryRefiner
from tests.helpers import TINY_DIMS, make_context, perturb_zero_init


def _refiner(**overrides) -> TrajectoryRefiner:
    d = TINY_DIMS
    cfg = RefinerConfig(dim=32, depth=3, mlp_ratio=2.0, moa=MoAConfig(num_heads=4, **overrides))
    return TrajectoryRefiner(
        cfg,
        latent_dim=d.latent_dim,
        reasoning_dim=d.reasoning_dim,
        ego_state_dim=d.ego_state_dim,
        history_len=d.history_len,
        history_dim=d.history_dim,
        num_waypoints=d.num_waypoints,
        num_route=d.num_route,
        num_decisions=d.num_decisions,
    )


def _memory(refiner, seed=0):
    ctx = make_context(seed=seed)
    return refiner.encode(
        bev_tokens=ctx.bev_tokens,
        decision_latents=ctx.decision_latents,
        ego_state=ctx.ego_state,
        ego_history=ctx.ego_history,
        plan_latents=ctx.plan_latents,
        bev_mask=ctx.bev_mask,
        reasoning_tokens=ctx.reasoning_tokens,
        reasoning_mask=ctx.reasoning_mask,
    )


def test_every_block_is_exactly_identity_at_init():
    torch.manual_seed(0)
    for bypass in (True, False):
        refiner = _refiner(bypass=bypass)
        memory = _memory(refiner)
        x = torch.randn(3, 26, 32)
        c = torch.randn(3, 32)
        for block, block_memory in zip(refiner.blocks, memory.blocks):
            assert torch.equal(block(x, c, block_memory), x)


def test_blocks_stop_being_identity_once_modulation_is_nonzero():
    torch.manual_seed(0)
    refiner = _refiner()
    perturb_zero_init(refiner)
    memory = _memory(refiner)
    x, c = torch.randn(3, 26, 32), torch.randn(3, 32)
    assert not torch.allclose(refiner.blocks[0](x, c, memory.blocks[0]), x)


def test_untrained_refiner_returns_its_anchor_or_its_input():
    torch.manual_seed(0)
    x_t, anchor = torch.randn(3, 26, 2), torch.randn(3, 26, 2)
    t = torch.tensor([0, 5, 19])
    refiner = _refiner()
    assert torch.equal(refiner(x_t, t, _memory(refiner).with_anchor(anchor)), anchor)
    d = TINY_DIMS
    sample_residual = TrajectoryRefiner(
        RefinerConfig(
            dim=32, depth=2, residual="sample", condition_on_anchor=False, moa=MoAConfig(num_heads=4)
        ),
        latent_dim=d.latent_dim,
        reasoning_dim=d.reasoning_dim,
        ego_state_dim=d.ego_state_dim,
        history_len=d.history_len,
        history_dim=d.history_dim,
        num_waypoints=d.num_waypoints,
        num_route=d.num_route,
        num_decisions=d.num_decisions,
    )
    assert torch.equal(sample_residual(x_t, t, _memory(sample_residual)), x_t)
    with pytest.raises(ValueError, match=r"memory\.anchor"):
        refiner(x_t, t, _memory(refiner))


def test_final_layer_and_modulate():
    layer = FinalLayer(8, 2)
    assert torch.equal(layer(torch.randn(2, 5, 8), torch.randn(2, 8)), torch.zeros(2, 5, 2))
    x = torch.ones(1, 2, 3)
    out = modulate(x, torch.full((1, 3), 0.5), torch.full((1, 3), 1.0))
    assert torch.equal(out, torch.full((1, 2, 3), 2.5))


def test_block_uses_the_conditioning():
    torch.manual_seed(0)
    block = DiTBlock(32, 2.0, MoAConfig(num_heads=4), reasoning_dim=0)
    perturb_zero_init(block)
    memory = block.attn.precompute(torch.randn(3, 7, 32), None, torch.randn(3, 3, 32), None, None)
    x = torch.randn(3, 26, 32)
    a = block(x, torch.zeros(3, 32), memory)
    b = block(x, torch.ones(3, 32), memory)
    assert not torch.allclose(a, b)
