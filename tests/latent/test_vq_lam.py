"""Vector quantiser and latent action model: straight-through gradients, seeded codes, statistics
against hand-computed values, the FDM's rigid warp against an exact pixel shift."""

import math

import pytest
import torch

from latent.config import LAMConfig, VQConfig
from latent.lam import LatentActionModel, load_lam, rigid_warp, save_lam
from latent.probe import probe_scores
from latent.toy import planted_transitions, shift, train_on_planted
from latent.vq import VectorQuantizer, code_statistics

TINY = dict(width=16, depth=1, num_heads=2, downsamples=2, vq=VQConfig(code_dim=8))


def test_quantized_is_the_nearest_entry_forward_and_the_identity_backward():
    vq = VectorQuantizer(VQConfig(codebook_size=5, code_dim=3, normalize=False), seed=0).eval()
    z = torch.randn(2, 4, 3, requires_grad=True)
    out = vq(z)
    dist = torch.cdist(z.detach().reshape(-1, 3), vq.codebook.detach())
    assert torch.equal(out.codes.flatten(), dist.argmin(-1))
    assert torch.allclose(out.quantized, vq.codebook[out.codes])
    upstream = torch.randn(2, 4, 3)
    (out.quantized * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)  # straight-through: d quantized / d z = identity


def test_straight_through_gradient_reaches_the_encoder():
    lam = LatentActionModel(LAMConfig(**TINY), (16, 16))
    obs, future, _ = planted_transitions(4, size=16, seed=0)
    lam(obs, future).recon_loss.backward()  # no VQ term: only the decoder's path back through the codes
    stem = lam.idm_stem.levels[0][0].weight.grad
    assert stem is not None and float(stem.abs().sum()) > 0


def test_codes_are_deterministic_for_a_seed():
    obs, future, _ = planted_transitions(16, size=16, seed=1)
    a = LatentActionModel(LAMConfig(**TINY, seed=3), (16, 16))
    b = LatentActionModel(LAMConfig(**TINY, seed=3), (16, 16))
    c = LatentActionModel(LAMConfig(**TINY, seed=4), (16, 16))
    assert torch.equal(a.codes(obs, future), b.codes(obs, future))
    assert not torch.equal(a.codes(obs, future), c.codes(obs, future))
    # Training (with restarts) is deterministic too.
    for m in (a, b):
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        for step in range(3):
            o, f, _ = planted_transitions(8, size=16, seed=10 + step)
            m.vq.config.restart_every = 1
            loss = m(o, f).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert torch.equal(a.codes(obs, future), b.codes(obs, future))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_code_statistics_match_hand_computed_values():
    codes = torch.tensor([[0, 1], [0, 1], [0, 2], [3, 1]])
    s = code_statistics(codes, 8)
    p = torch.tensor([3, 3, 1, 1]) / 8.0
    assert s["perplexity"] == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    assert s["usage"] == pytest.approx(4 / 8)
    slot0 = torch.tensor([3, 1]) / 4.0
    slot1 = torch.tensor([3, 1]) / 4.0
    expected = (math.exp(-(slot0 * slot0.log()).sum()) + math.exp(-(slot1 * slot1.log()).sum())) / 2
    assert s["token_perplexity"] == pytest.approx(expected)
    assert s["combinations"] == 3


def test_probe_reads_informative_codes_and_not_random_ones():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=g)
    informative = torch.stack([labels * 2, torch.randint(0, 8, (400,), generator=g)], dim=1)
    noise = torch.randint(0, 8, (400, 2), generator=g)
    good = probe_scores(
        informative[:200], labels[:200], informative[200:], labels[200:], codebook_size=8, num_classes=4
    )
    bad = probe_scores(noise[:200], labels[:200], noise[200:], labels[200:], codebook_size=8, num_classes=4)
    assert good["accuracy"] == 1.0 and good["balanced_accuracy"] == 1.0
    assert bad["accuracy"] < 0.45 and bad["majority"] < 0.4


@pytest.mark.parametrize("cols", [-3, 2])
def test_rigid_warp_by_whole_pixels_is_an_exact_shift(cols):
    obs, _, _ = planted_transitions(2, size=16, seed=2)
    motion = torch.tensor([[-2.0 * cols / 16, 0.0, 0.0]]).expand(2, 3)
    assert torch.allclose(rigid_warp(obs, motion), shift(obs, 0, cols), atol=1e-5)


def test_lam_folder_round_trip_and_strict_load(tmp_path):
    lam = LatentActionModel(LAMConfig(**TINY, pool=2), (32, 32))
    save_lam(lam, tmp_path / "lam")
    loaded = load_lam(tmp_path / "lam")
    obs, future, _ = planted_transitions(4, size=32, seed=0)
    assert torch.equal(lam.codes(obs, future), loaded.codes(obs, future))
    with pytest.raises(
        ValueError, match=r"image_size: expected two sides divisible by pool x 2\^downsamples = 8"
    ):
        LatentActionModel(LAMConfig(**TINY, pool=2), (20, 20))
    with pytest.raises(ValueError, match=r"obs: expected shape \(B, 4, 32, 32\)"):
        lam.codes(obs[:, :, :16, :16], future[:, :, :16, :16])


PLANTED = dict(width=32, depth=1, num_heads=4, downsamples=2, vq=VQConfig(code_dim=16, restart_every=50))


ACTIONS = 4  # planted moves: none, up, down, left (3 px on a 16 x 16 raster)


def _train(lam, steps, first_seed=0):
    return train_on_planted(lam, steps, num_actions=ACTIONS, first_seed=first_seed)


@pytest.fixture(scope="module")
def planted():
    """A LAM trained on fresh planted transitions every step; it never sees the actions."""
    torch.manual_seed(0)
    lam = _train(LatentActionModel(LAMConfig(**PLANTED), (16, 16)), 250)
    held_out = planted_transitions(512, size=16, num_actions=ACTIONS, seed=10**6)
    return lam, held_out


def test_the_codes_recover_the_planted_actions_and_many_codes_stay_in_use(planted):
    lam, (obs, future, actions) = planted
    codes = lam.codes(obs, future)
    stats = code_statistics(codes, 16)
    assert stats["usage"] >= 0.3 and stats["perplexity"] >= 3.0
    scores = probe_scores(
        codes[:256], actions[:256], codes[256:], actions[256:], codebook_size=16, num_classes=ACTIONS
    )
    assert scores["accuracy"] >= 0.85 and scores["majority"] < 0.35
    with torch.no_grad():
        out = lam(obs, future)
    assert (out.prediction - future).pow(2).mean() < 0.5 * (obs - future).pow(2).mean()  # beats copying


def test_dead_code_restarts_revive_a_collapsed_codebook(planted):
    usage = {}
    for restart_every in (0, 10):
        vq = VQConfig(code_dim=16, restart_every=restart_every)
        lam = LatentActionModel(LAMConfig(**{**PLANTED, "vq": vq}), (16, 16))
        lam.load_state_dict(planted[0].state_dict())
        with torch.no_grad():  # every entry but the first far from any encoder output: dead
            lam.vq.codebook[1:] = 100.0
        _train(lam, 30, first_seed=5000)
        obs, future, _ = planted[1]
        usage[restart_every] = code_statistics(lam.codes(obs, future), 16)["usage"]
    assert usage[0] == 1 / 16 and usage[10] >= 0.3
