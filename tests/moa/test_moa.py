import math

import pytest
import torch

from heads import build_head
from moa import MixtureOfAttention, MoAConfig, masked_mean
from tests.helpers import TINY_DIMS, TINY_REFINER, make_context, make_target, perturb_zero_init

D, H = 16, 2


def _inputs(seed=0, b=2, n=5, k=3, s=4):
    g = torch.Generator().manual_seed(seed)
    bev_mask = torch.ones(b, n, dtype=torch.bool)
    bev_mask[0, 3:] = False
    return dict(
        x=torch.randn(b, 7, D, generator=g),
        bev=torch.randn(b, n, D, generator=g),
        bev_mask=bev_mask,
        decisions=torch.randn(b, k, D, generator=g),
        reasoning=torch.randn(b, s, 12, generator=g),
        reasoning_mask=torch.ones(b, s, dtype=torch.bool),
    )


def _run(moa, inp):
    mem = moa.precompute(
        inp["bev"], inp["bev_mask"], inp["decisions"], inp["reasoning"], inp["reasoning_mask"]
    )
    return moa(inp["x"], mem)


def test_joint_attention_matches_a_hand_written_softmax():
    torch.manual_seed(0)
    moa = MixtureOfAttention(D, MoAConfig(num_heads=H, bypass=False, lambda_init=0.7), reasoning_dim=0)
    inp = _inputs()
    out = _run(moa, inp)

    def split(t):  # (B, L, D) -> (B, H, L, d)
        return t.view(t.shape[0], t.shape[1], H, D // H).transpose(1, 2)

    x, bev, dec = inp["x"], inp["bev"], inp["decisions"]
    q = split(moa.q(x))
    ks, vs = moa.kv_self(x).chunk(2, -1)
    kb, vb = moa.kv_bev(bev).chunk(2, -1)
    kd, vd = moa.kv_decision(dec).chunk(2, -1)
    k = split(torch.cat([ks, kb, kd], 1))
    v = split(torch.cat([vs, vb, 0.7 * vd], 1))
    logits = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    valid = torch.cat(
        [torch.ones(2, 7, dtype=torch.bool), inp["bev_mask"], torch.ones(2, 3, dtype=torch.bool)], 1
    )
    logits = logits.masked_fill(~valid[:, None, None, :], float("-inf"))
    ref = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, D)
    assert torch.allclose(out, moa.proj(ref), atol=1e-5)


def test_padded_bev_tokens_have_no_effect():
    torch.manual_seed(0)
    moa = MixtureOfAttention(D, MoAConfig(num_heads=H), reasoning_dim=12)
    perturb_zero_init(moa)
    inp = _inputs()
    a = _run(moa, inp)
    inp["bev"][0, 3:] += 100.0  # only padded positions of sample 0 change
    b = _run(moa, inp)
    assert torch.allclose(a, b, atol=1e-5)
    inp["bev"][0, 0] += 1.0
    assert not torch.allclose(a, _run(moa, inp), atol=1e-5)


def test_masked_mean():
    tokens = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert torch.equal(masked_mean(tokens, torch.tensor([[True, True, False]])), torch.tensor([[2.0]]))


def test_separate_mode_with_lambda_zero_equals_no_decision_source():
    torch.manual_seed(0)
    full = MixtureOfAttention(D, MoAConfig(num_heads=H, joint=False, bypass=False), reasoning_dim=0)
    none = MixtureOfAttention(
        D, MoAConfig(num_heads=H, joint=False, bypass=False, decision_source=False), reasoning_dim=0
    )
    none.load_state_dict({k: v for k, v in full.state_dict().items() if "decision" not in k})
    inp = _inputs()
    with torch.no_grad():
        full.decision_lambda.zero_()
    assert torch.allclose(_run(full, inp), _run(none, inp), atol=1e-6)
    with torch.no_grad():
        full.decision_lambda.fill_(1.0)
    assert not torch.allclose(_run(full, inp), _run(none, inp), atol=1e-4)


def test_joint_and_separate_differ():
    torch.manual_seed(0)
    joint = MixtureOfAttention(D, MoAConfig(num_heads=H, bypass=False), reasoning_dim=0)
    sep = MixtureOfAttention(D, MoAConfig(num_heads=H, bypass=False, joint=False), reasoning_dim=0)
    sep.load_state_dict(joint.state_dict())
    inp = _inputs()
    assert not torch.allclose(_run(joint, inp), _run(sep, inp), atol=1e-4)


def test_bypass_is_the_gated_sum_of_pooled_bev_and_pooled_reasoning():
    """b = g_bev * P_bev(mean BEV) + g_reason * P_reason(attnpool R), computed by hand; the main pathway
    does not depend on it."""
    torch.manual_seed(0)
    moa = MixtureOfAttention(D, MoAConfig(num_heads=H, gate_init=0.7), reasoning_dim=12)
    inp = _inputs()
    mem = moa.precompute(
        inp["bev"], inp["bev_mask"], inp["decisions"], inp["reasoning"], inp["reasoning_mask"]
    )
    pooled_bev = masked_mean(inp["bev"], inp["bev_mask"])
    pooled_r = moa.reasoning_pool(inp["reasoning"], inp["reasoning_mask"])
    expected = 0.7 * moa.bypass_bev(pooled_bev) + 0.7 * moa.bypass_reasoning(pooled_r)
    assert torch.allclose(mem.bypass, expected, atol=1e-6)
    with torch.no_grad():
        moa.gate_bev.zero_()
        moa.gate_reasoning.zero_()
    mem_off = moa.precompute(
        inp["bev"], inp["bev_mask"], inp["decisions"], inp["reasoning"], inp["reasoning_mask"]
    )
    assert torch.equal(mem_off.bypass, torch.zeros_like(mem.bypass))
    assert torch.equal(moa(inp["x"], mem), moa(inp["x"], mem_off))


def test_block_adds_the_bypass_scaled_by_its_adaln_factor():
    """x <- x + gate(c) * h + a(c) * b: with the MoA and MLP gates closed, the block adds exactly a(c) * b."""
    from refiner.dit import DiTBlock

    torch.manual_seed(0)
    block = DiTBlock(D, 2.0, MoAConfig(num_heads=H), reasoning_dim=12)
    inp = _inputs()
    mem = block.attn.precompute(
        inp["bev"], inp["bev_mask"], inp["decisions"], inp["reasoning"], inp["reasoning_mask"]
    )
    a = torch.full((D,), 0.3)
    with torch.no_grad():
        block.adaLN_modulation[-1].bias[6 * D :] = a  # a(c) = 0.3, every gate still 0
    c = torch.randn(2, D)
    out = block(inp["x"], c, mem)
    assert torch.allclose(out - inp["x"], (a * mem.bypass)[:, None, :].expand_as(out), atol=1e-6)


def _grads(overrides):
    torch.manual_seed(0)
    head = build_head("diffusion", TINY_DIMS, refiner={**TINY_REFINER, "moa": {"num_heads": 4, **overrides}})
    perturb_zero_init(head.denoiser.network)
    loss = head.loss(make_context(), make_target(), generator=torch.Generator().manual_seed(0))["loss"]
    loss.backward()
    return {n: p.grad for n, p in head.named_parameters() if p.requires_grad}


def _nonzero(grads, key):
    found = {n: g for n, g in grads.items() if n.endswith(key)}
    assert found, f"no parameter named *{key}"
    return all(g is not None and bool(g.abs().sum() > 0) for g in found.values())


def test_gradients_reach_lambda_and_gates():
    grads = _grads({})
    for key in (
        "decision_lambda",
        "gate_bev",
        "gate_reasoning",
        "kv_decision.weight",
        "reasoning_pool.query",
    ):
        assert _nonzero(grads, key), key


def test_bypass_factor_gets_gradient_at_the_identity_start():
    """At init every gate and a(c) are zero (each block is the identity), yet the bypass is not dead:
    its AdaLN factor a(c) receives gradient from the first step because the gates start at 1."""
    torch.manual_seed(0)
    head = build_head("diffusion", TINY_DIMS, refiner=TINY_REFINER)
    net = head.denoiser.network
    with torch.no_grad():
        net.final.linear.weight.normal_(0, 0.1)  # let gradient reach the blocks
    head.loss(make_context(), make_target(), generator=torch.Generator().manual_seed(0))["loss"].backward()
    for block in net.blocks:
        w = block.adaLN_modulation[-1].weight
        assert bool((w == 0).all())  # still at the identity start
        assert float(w.grad[6 * 32 :].abs().sum()) > 0  # a(c) learns
        assert float(w.grad[2 * 32 : 3 * 32].abs().sum()) > 0  # and so does the main path's gate


@pytest.mark.parametrize(
    ("overrides", "removed"),
    [
        ({"bypass": False}, ("gate_bev", "gate_reasoning", "bypass_bev.weight", "reasoning_pool.query")),
        (
            {"decision_source": False},
            ("decision_lambda", "kv_decision.weight", "decision_in.1.weight", "horizon_embed"),
        ),
        ({"scale_decision": False}, ("decision_lambda",)),
    ],
)
def test_ablation_switches_remove_parameters_and_their_gradient(overrides, removed):
    grads = _grads(overrides)
    for key in removed:
        assert not any(n.endswith(key) for n in grads), f"{key} should not exist with {overrides}"
    # What remains still learns.
    assert _nonzero(grads, "kv_bev.weight")
    if overrides.get("decision_source", True):
        assert _nonzero(grads, "kv_decision.weight")
