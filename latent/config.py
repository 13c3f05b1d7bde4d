"""Configuration of the latent action model (LAM): what it observes, its codebook and its networks.

Defaults follow the public latent-action recipes where they exist (UniVLA: M = 4 latent tokens per
transition from a 16-entry codebook, loss = reconstruction MSE + VQ loss + 0.25 x commitment; LAPA
uses 8 entries and 4 tokens). LatentVLA publishes its 16-entry codebook but not its frame spacing or
token count: the 1 s spacing matches the AE's decision horizons (1/2/3 s), a choice of this library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from automot.checks import check_choice, check_positive

RECON_LOSSES = ("mse", "bce")


def _check_int(name: str, value: object, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


@dataclass
class VQConfig:
    """The codebook. `restart_every` > 0 replaces codes used fewer than `dead_threshold` times in the
    last `restart_every` training steps by encoder outputs of the current batch (0 = never)."""

    codebook_size: int = 16
    code_dim: int = 32
    beta: float = 0.25  # commitment weight
    normalize: bool = False  # l2-normalise encoder outputs and entries (cosine lookup)
    restart_every: int = 50
    dead_threshold: int = 1

    def __post_init__(self) -> None:
        _check_int("VQConfig.codebook_size", self.codebook_size, 2)
        _check_int("VQConfig.code_dim", self.code_dim)
        check_positive("VQConfig.beta", self.beta, allow_zero=True)
        _check_int("VQConfig.restart_every", self.restart_every, 0)
        _check_int("VQConfig.dead_threshold", self.dead_threshold)


@dataclass
class LAMConfig:
    """The latent action model over observation pairs (o_t, o_{t+H}).

    observation:  a name in `latent.observations.OBSERVATIONS` ("bev" raster or "rgb" camera frame).
    horizon_s:    H, the spacing of an observation pair (a whole number of policy steps).
    num_tokens:   M latent tokens per transition, each one code of the codebook.
    width:        channels of the convolutional stems and width of the token transformers.
    depth:        transformer blocks of the IDM encoder and of the FDM decoder each.
    downsamples:  the stems downsample by 2 that many times; the tokens are that feature map.
    pool:         average-pool the observations by this factor first (cheaper; coarser).
    recon_loss:   "mse" on the predicted frame in [0, 1] (the public recipe) or "bce" on its logits.
    recon_scales: also compare the frames average-pooled by these factors (`LatentActionModel.recon_loss`).
    warp:         the FDM's code -> rigid-motion path (`latent.lam`); False = residual decoder only.
    zero_init_delta: start the residual decoder's output layer at zero.
    odometry:     the LAM also observes the ego speed at both ends of a transition (the speedometer, an
                  observation field, not a label) and its FDM must predict the speed change from the
                  codes and the speed at t (`latent.lam`): the codes then carry the ego's longitudinal
                  motion, which an ego-centred BEV sampled at the policy rate hides (docs/latent.md).
    odometry_weight: weight of that prediction's squared error, in (m/s)^2 (the frame reconstruction is
                  a sum over pixels, about 30 per sample on the embedded world's BEV).
    seed:         initialisation seed (weights are drawn from it, the global RNG is untouched).
    """

    observation: str = "bev"
    horizon_s: float = 1.0
    num_tokens: int = 4
    vq: VQConfig = field(default_factory=VQConfig)
    width: int = 64
    depth: int = 2
    num_heads: int = 4
    downsamples: int = 3
    pool: int = 1
    recon_loss: str = "mse"
    recon_scales: tuple[int, ...] = (1, 2, 4)
    warp: bool = True
    zero_init_delta: bool = False
    odometry: bool = False
    odometry_weight: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.vq, dict):
            self.vq = VQConfig(**self.vq)
        from latent.observations import OBSERVATIONS

        check_choice("LAMConfig.observation", self.observation, OBSERVATIONS.names())
        check_positive("LAMConfig.horizon_s", self.horizon_s)
        for name in ("num_tokens", "width", "depth", "num_heads", "downsamples", "pool"):
            _check_int(f"LAMConfig.{name}", getattr(self, name))
        if self.width % self.num_heads:
            raise ValueError(
                f"LAMConfig.width: expected a multiple of num_heads={self.num_heads}, got {self.width}"
            )
        if not isinstance(self.odometry, bool):
            raise ValueError(f"LAMConfig.odometry: expected true or false, got {self.odometry!r}")
        if isinstance(self.odometry_weight, bool) or not isinstance(self.odometry_weight, (int, float)):
            raise ValueError(
                f"LAMConfig.odometry_weight: expected a number > 0, got {self.odometry_weight!r}"
            )
        check_positive("LAMConfig.odometry_weight", self.odometry_weight)
        check_choice("LAMConfig.recon_loss", self.recon_loss, RECON_LOSSES)
        self.recon_scales = tuple(self.recon_scales)
        if not self.recon_scales or any(not isinstance(s, int) or s < 1 for s in self.recon_scales):
            raise ValueError(f"LAMConfig.recon_scales: expected ints >= 1, got {self.recon_scales}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LAMConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"LAMConfig: unknown fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**data)
