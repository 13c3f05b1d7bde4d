"""Vector quantisation of latent actions (VQ-VAE, van den Oord et al. 2017) with dead-code restarts.

Axes: B batch, M latent tokens, E code width, K codebook entries.

    codes      = argmin_k || z_e - e_k ||^2                    (nearest entry, first on ties)
    quantized  = z_e + sg(e_codes - z_e)                         (straight-through: forward = e, backward = identity)
    loss       = || sg(z_e) - e ||^2 + beta || z_e - sg(e) ||^2  (codebook + commitment)

With `normalize` encoder outputs and entries are unit vectors (a cosine lookup, as in improved
VQGAN). Off by default: on the planted-action toy it kept fewer codes alive than the plain lookup
with restarts (docs/latent.md).

Keeping the codebook alive: at the first training step every entry is set to an encoder output of
that batch (a data-dependent start), and every `restart_every` training steps each entry chosen
fewer than `dead_threshold` times since the last check is moved onto a random encoder output of the
current batch (UniVLA restarts dead codes too, by copying live entries). The counts, the step and the
restart draws (a generator seeded from (seed, step)) are buffers or functions of them, so a resumed
run restarts exactly the codes an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from automot.checks import check_tensor
from latent.config import VQConfig


@dataclass
class VQOutput:
    """quantized (B, M, E) straight-through codes; codes (B, M) long; the two loss terms (scalars)
    and `loss` = codebook_loss + beta * commitment_loss."""

    quantized: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commitment_loss: torch.Tensor
    loss: torch.Tensor


class VectorQuantizer(nn.Module):
    def __init__(self, config: VQConfig, seed: int = 0) -> None:
        super().__init__()
        self.config, self.seed = config, seed
        k, e = config.codebook_size, config.code_dim
        g = torch.Generator().manual_seed(seed)
        self.codebook = nn.Parameter(torch.randn(k, e, generator=g))
        # Persistent: Lightning checkpoints carry them, so restarts resume exactly.
        self.register_buffer("counts", torch.zeros(k))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.codebook.shape[0]

    def entries(self) -> torch.Tensor:
        """The codebook (K, E) as used for lookup (unit vectors when `normalize`)."""
        return F.normalize(self.codebook, dim=-1) if self.config.normalize else self.codebook

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., E) -> codes (...) long: the nearest codebook entry (squared Euclidean; z is expected
        normalised already when `normalize`)."""
        flat = z.reshape(-1, z.shape[-1])
        e = self.entries()
        d = flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ e.t() + e.pow(2).sum(-1)[None]
        return d.argmin(dim=-1).view(z.shape[:-1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (...) long -> codebook vectors (..., E)."""
        if codes.dtype != torch.long:
            raise ValueError(f"codes: expected dtype torch.int64, got {codes.dtype}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.size):
            raise ValueError(
                f"codes: expected entries in [0, {self.size}), got {int(codes.min())}..{int(codes.max())}"
            )
        return self.entries()[codes]

    def forward(self, z: torch.Tensor) -> VQOutput:
        """z (B, M, E) encoder outputs -> VQOutput. In training mode also keeps the codebook alive."""
        check_tensor("z", z, ("B", "M", self.config.code_dim))
        if self.config.normalize:
            z = F.normalize(z, dim=-1)
        if self.training:
            self._maintain(z.detach())
        codes = self.nearest(z)
        e = self.entries()[codes]
        codebook_loss = (z.detach() - e).pow(2).mean()
        commitment_loss = (z - e.detach()).pow(2).mean()
        quantized = z + (e - z).detach()
        if self.training:
            with torch.no_grad():
                self.counts += torch.bincount(codes.flatten(), minlength=self.size).to(self.counts)
        return VQOutput(
            quantized=quantized,
            codes=codes,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            loss=codebook_loss + self.config.beta * commitment_loss,
        )

    @torch.no_grad()
    def _maintain(self, z: torch.Tensor) -> None:
        flat = z.reshape(-1, z.shape[-1])
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.step))
        if not bool(self.initialised):
            self._place(torch.arange(self.size), flat, g)
            self.initialised.fill_(True)
        every = self.config.restart_every
        if every and int(self.step) > 0 and int(self.step) % every == 0:
            dead = (self.counts < self.config.dead_threshold).nonzero().flatten()
            if dead.numel():
                self._place(dead, flat, g)
                self.restarts += dead.numel()
            self.counts.zero_()
        self.step += 1

    def _place(self, entries: torch.Tensor, flat: torch.Tensor, g: torch.Generator) -> None:
        """Move codebook `entries` onto randomly drawn rows of `flat` (N, E), slightly jittered."""
        n = flat.shape[0]
        rows = (
            torch.randperm(n, generator=g)[: entries.numel()]
            if n >= entries.numel()
            else torch.randint(0, n, (entries.numel(),), generator=g)
        )
        scale = flat.std().clamp_min(1e-6) * 0.01
        jitter = torch.randn(entries.numel(), flat.shape[-1], generator=g) * scale
        self.codebook.data[entries] = flat[rows].cpu().to(self.codebook.dtype).to(
            self.codebook.device
        ) + jitter.to(self.codebook.device)


def code_statistics(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Codebook use over a set of transitions: codes (N, M) long.

    perplexity: exp(entropy) of the code distribution pooled over tokens (1 .. K; K = uniform use);
    usage: share of entries used at least once; token_perplexity: mean over the M token slots of each
    slot's own perplexity; combinations: distinct code tuples over the M slots.
    """
    check_tensor("codes", codes, ("N", "M"), dtype=torch.long)
    if codes.numel() == 0:
        raise ValueError("codes: expected at least one transition, got none")

    def perplexity(c: torch.Tensor) -> float:
        p = torch.bincount(c.flatten(), minlength=codebook_size).double()
        p = p / p.sum()
        nz = p[p > 0]
        return float(math.exp(-(nz * nz.log()).sum()))

    counts = torch.bincount(codes.flatten(), minlength=codebook_size)
    return {
        "perplexity": perplexity(codes),
        "usage": float((counts > 0).double().mean()),
        "token_perplexity": sum(perplexity(codes[:, m]) for m in range(codes.shape[1])) / codes.shape[1],
        "combinations": len({tuple(row) for row in codes.tolist()}),
    }
