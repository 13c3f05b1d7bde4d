"""The latent action model (LAM): inverse dynamics (IDM) -> VQ codes -> forward dynamics (FDM).

Axes: B batch, C observation channels, H/W observation size, M latent tokens, E code width, D width,
N = (H / 2^n) x (W / 2^n) patch tokens.

    IDM  [o_t ; o_{t+H} ; o_{t+H} - o_t] (B, 3C, H, W) -> conv stem -> patches (B, N, D)
         [M action queries ; patches] -> transformer -> the queries' outputs -> LN + Linear -> z_e (B, M, E)
    VQ   z_e -> codes (B, M) in [0, K), straight-through quantized z_q (B, M, E)
    FDM  warp:  MLP(z_q) -> rigid motion (tx, ty, angle), zero at init; w_t = o_t moved by it (bilinear)
         delta: o_t -> conv stem -> patches (B, N, D); [Linear(z_q) + slot embedding (B, M, D) ; patches]
                -> transformer -> patches -> U-Net upsampler (skips from the stem and w_t) -> (B, C, H, W)
         logits = logit(clamp(w_t, eps, 1 - eps)) + delta
    loss = recon(o_{t+H}) + codebook + beta * commitment

With odometry (`LAMConfig.odometry`, off by default) the LAM also reads the ego speed v at both ends:

    IDM  one more token, Linear([v_t / 10 ; (v_{t+H} - v_t) / 1]) (B, 1, D), beside the patches
    FDM  MLP([z_q flattened ; v_t / 10]) -> predicted speed change (B,) in m/s
    loss += odometry_weight * (predicted - (v_{t+H} - v_t))^2

The codes are then the only path by which the FDM learns the speed change, as they are for the
frame's change: in an ego-centred BEV at the policy rate the ego's own longitudinal motion is hidden
(the static road looks the same after any distance, and its dashes alias at 4.33 m), so without the
speedometer the codes leave it out (docs/latent.md).

The untrained FDM starts near "nothing changes" (the copy-current-frame baseline). The warp path is
this library's choice for an ego-centred BEV: the ego's own motion moves the whole static scene
rigidly, so a code -> rigid-motion path lets the codes learn ego motion in a few hundred steps (the
residual path draws the rest: other agents, newly visible road). `warp=False` leaves only the
generic residual decoder of the public recipes.

With `pool` > 1 both observations are average-pooled by that factor first (the prediction and its
loss live at the pooled size; `image_size` is the size before pooling).

The only path from o_{t+H} to the decoder is the M codes (log2(K^M) bits, 16 bits at the defaults),
so they must carry what changes between the two frames that o_t cannot predict: for an ego-centred
BEV, mostly the ego's own motion. Trained on observations only; it never sees a label.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from automot.checks import check_tensor
from automot.export import export_directory
from automot.io import (
    load_safetensors,
    load_state_dict_strict,
    save_safetensors_atomic,
    write_json_atomic,
)
from heads.blocks import TransformerBlock
from latent.blocks import ConvStem, ConvUpsampler
from latent.config import LAMConfig
from latent.observations import observation_kind
from latent.vq import VectorQuantizer, VQOutput

COPY_EPS = 0.02
SPEED_SCALE = 10.0  # m/s: the odometry inputs' unit (speeds of 0-30 m/s)
WEIGHTS = "lam.safetensors"
CONFIG = "lam_config.json"
FORMAT = 1


@dataclass
class LAMOutput:
    """codes (B, M) long; logits / prediction (B, C, H, W) (prediction = sigmoid(logits) in [0, 1]);
    recon_loss (summed over pixels, batch mean), loss scalars; vq: the quantiser's output;
    speed_change (B,) the FDM's predicted speed change (m/s) and speed_loss (weighted, batch mean) with
    odometry, else None and 0."""

    codes: torch.Tensor
    logits: torch.Tensor
    prediction: torch.Tensor
    recon_loss: torch.Tensor
    loss: torch.Tensor
    vq: VQOutput
    speed_change: torch.Tensor | None = None
    speed_loss: torch.Tensor | float = 0.0


class LatentActionModel(nn.Module):
    def __init__(self, config: LAMConfig, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.config = c = config
        self.channels = observation_kind(c.observation).channels
        self.image_size = tuple(int(s) for s in image_size)
        factor = 2**c.downsamples * c.pool
        if len(self.image_size) != 2 or any(s % factor for s in self.image_size):
            raise ValueError(
                f"image_size: expected two sides divisible by pool x 2^downsamples = {factor}, got {self.image_size}"
            )
        self.model_size = tuple(s // c.pool for s in self.image_size)
        grid = self.image_size[0] // factor * (self.image_size[1] // factor)
        d, e = c.width, c.vq.code_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.idm_stem = ConvStem(3 * self.channels, d, c.downsamples)
            self.idm_pos = nn.Parameter(torch.randn(grid, d) * 0.02)
            self.action_queries = nn.Parameter(torch.randn(c.num_tokens, d) * 0.02)
            self.idm_blocks = nn.ModuleList(TransformerBlock(d, c.num_heads) for _ in range(c.depth))
            self.to_code = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, e))
            self.vq = VectorQuantizer(c.vq, seed=c.seed)
            self.fdm_stem = ConvStem(self.channels, d, c.downsamples)
            self.fdm_pos = nn.Parameter(torch.randn(grid, d) * 0.02)
            self.from_code = nn.Linear(e, d)
            self.slot_embed = nn.Parameter(torch.randn(c.num_tokens, d) * 0.02)
            self.fdm_blocks = nn.ModuleList(TransformerBlock(d, c.num_heads) for _ in range(c.depth))
            self.fdm_norm = nn.LayerNorm(d)
            self.upsampler = ConvUpsampler(self.fdm_stem, self.channels, self.channels)
            self.motion = None
            if c.warp:
                self.motion = nn.Sequential(nn.Linear(c.num_tokens * e, d), nn.GELU(), nn.Linear(d, 3))
                nn.init.zeros_(self.motion[-1].weight)
                nn.init.zeros_(self.motion[-1].bias)
            if c.zero_init_delta:
                nn.init.zeros_(self.upsampler.out.weight)
                nn.init.zeros_(self.upsampler.out.bias)
            self.odometry_token = self.speed_head = None  # built last: a LAM without odometry is unchanged
            if c.odometry:
                self.odometry_token = nn.Linear(2, d)
                self.speed_head = nn.Sequential(
                    nn.Linear(c.num_tokens * e + 1, d), nn.GELU(), nn.Linear(d, 1)
                )

    def prepare(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Check an observation (B, C, H, W) in [0, 1] and pool it to the model's size."""
        check_tensor(name, x, ("B", self.channels, *self.image_size))
        return F.avg_pool2d(x, self.config.pool) if self.config.pool > 1 else x

    def check_speeds(self, speeds: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """speeds (B, 2): the ego speed (m/s) at t and t+H, required exactly when the LAM reads odometry."""
        if not self.config.odometry:
            if speeds is not None:
                raise ValueError(
                    "speeds: expected None for a LAM without odometry (LAMConfig.odometry=False), got a tensor"
                )
            return None
        if speeds is None:
            raise ValueError(
                "speeds: expected (B, 2) ego speeds at t and t+H for a LAM with odometry "
                "(LAMConfig.odometry=True), got None"
            )
        check_tensor("speeds", speeds, (batch, 2))
        return speeds.to(torch.float32)

    def encode(self, obs: torch.Tensor, future: torch.Tensor, speeds: torch.Tensor | None = None) -> VQOutput:
        """IDM + VQ: obs, future (B, C, H, W) in [0, 1] (+ speeds (B, 2) with odometry) -> VQOutput
        (codes (B, M), quantized (B, M, E))."""
        obs, future = self.prepare("obs", obs), self.prepare("future", future)
        return self._encode(obs, future, self.check_speeds(speeds, obs.shape[0]))

    def _encode(
        self, obs: torch.Tensor, future: torch.Tensor, speeds: torch.Tensor | None = None
    ) -> VQOutput:
        x = self.idm_stem(torch.cat((obs, future, future - obs), dim=1))[-1]
        patches = x.flatten(2).transpose(1, 2) + self.idm_pos
        m = self.config.num_tokens
        tokens = torch.cat((self.action_queries.expand(obs.shape[0], -1, -1), patches), dim=1)
        if self.odometry_token is not None:
            odometry = torch.stack((speeds[:, 0] / SPEED_SCALE, speeds[:, 1] - speeds[:, 0]), dim=-1)
            tokens = torch.cat((tokens, self.odometry_token(odometry)[:, None]), dim=1)
        for block in self.idm_blocks:
            tokens = block(tokens)
        return self.vq(self.to_code(tokens[:, :m]))

    def decode(self, obs: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        """FDM: obs (B, C, H, W) + quantized codes (B, M, E) -> logits of o_{t+H} at the pooled size."""
        return self._decode(self.prepare("obs", obs), quantized)

    def _decode(self, obs: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
        check_tensor("quantized", quantized, (obs.shape[0], self.config.num_tokens, self.config.vq.code_dim))
        maps = self.fdm_stem(obs)
        x = maps[-1]
        b, d, h, w = x.shape
        patches = x.flatten(2).transpose(1, 2) + self.fdm_pos
        m = self.config.num_tokens
        tokens = torch.cat((self.from_code(quantized) + self.slot_embed, patches), dim=1)
        for block in self.fdm_blocks:
            tokens = block(tokens)
        grid = self.fdm_norm(tokens[:, m:]).transpose(1, 2).reshape(b, d, h, w)
        base = obs if self.motion is None else rigid_warp(obs, self.motion(quantized.flatten(1)))
        return torch.logit(base.clamp(COPY_EPS, 1 - COPY_EPS)) + self.upsampler(grid, maps, base)

    def predict_speed_change(self, quantized: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        """The FDM's odometry: quantized codes (B, M, E) + the ego speed at t (B,) -> speed change (B,) m/s."""
        if self.speed_head is None:
            raise ValueError("predict_speed_change: expected a LAM with odometry (LAMConfig.odometry=True)")
        return self.speed_head(torch.cat((quantized.flatten(1), speed[:, None] / SPEED_SCALE), dim=-1))[:, 0]

    def forward(
        self, obs: torch.Tensor, future: torch.Tensor, speeds: torch.Tensor | None = None
    ) -> LAMOutput:
        """obs, future (B, C, H, W) in [0, 1] (+ speeds (B, 2) at t and t+H with odometry) -> LAMOutput
        (codes, reconstruction of the pooled `future`, the speed change with odometry, losses)."""
        obs, future = self.prepare("obs", obs), self.prepare("future", future)
        speeds = self.check_speeds(speeds, obs.shape[0])
        vq = self._encode(obs, future, speeds)
        logits = self._decode(obs, vq.quantized)
        prediction = torch.sigmoid(logits)
        recon = self.recon_loss(logits, prediction, future)
        change, speed_loss = None, recon.new_zeros(())
        if speeds is not None:
            change = self.predict_speed_change(vq.quantized, speeds[:, 0])
            error = change - (speeds[:, 1] - speeds[:, 0])
            speed_loss = self.config.odometry_weight * error.pow(2).mean()
        return LAMOutput(
            codes=vq.codes,
            logits=logits,
            prediction=prediction,
            recon_loss=recon,
            loss=recon + vq.loss + speed_loss,
            vq=vq,
            speed_change=change,
            speed_loss=speed_loss,
        )

    def recon_loss(
        self, logits: torch.Tensor, prediction: torch.Tensor, future: torch.Tensor
    ) -> torch.Tensor:
        """Summed over the pixels of a sample (a likelihood, as in VQ-VAE), averaged over the batch: a
        per-pixel mean would leave the reconstruction's pull on the codes thousands of times weaker
        than the commitment term's, and the encoder collapses onto a few codes. Each extra scale s in
        `recon_scales` adds the same error between s x s average-pooled frames (weighted by s^2): a
        blurred comparison still says which way a shape moved when it moved farther than its size."""
        c = self.config
        if c.recon_loss == "bce":
            total = F.binary_cross_entropy_with_logits(logits, future, reduction="none").sum(dim=(1, 2, 3))
        else:
            total = (prediction - future).pow(2).sum(dim=(1, 2, 3))
        for scale in c.recon_scales:
            if scale > 1:
                diff = F.avg_pool2d(prediction, scale) - F.avg_pool2d(future, scale)
                total = total + scale**2 * diff.pow(2).sum(dim=(1, 2, 3))
        return total.mean()

    @torch.no_grad()
    def codes(
        self, obs: torch.Tensor, future: torch.Tensor, speeds: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The latent action of each transition: (B, C, H, W) x 2 (+ speeds (B, 2) with odometry) ->
        (B, M) long (eval-mode encoder)."""
        was = self.training
        self.eval()
        try:
            return self.encode(obs, future, speeds).codes
        finally:
            self.train(was)

    @torch.no_grad()
    def sequence_codes(self, frames: torch.Tensor, speeds: torch.Tensor | None = None) -> torch.Tensor:
        """Latent actions of consecutive transitions: frames (B, 1 + K, C, H, W) (+ speeds (B, 1 + K)
        with odometry) -> codes (B, K, M)."""
        check_tensor("frames", frames, ("B", None, self.channels, *self.image_size))
        b, n = frames.shape[:2]
        if n < 2:
            raise ValueError(f"frames: expected at least 2 frames per sample, got {n}")
        obs = frames[:, :-1].reshape(b * (n - 1), *frames.shape[2:])
        future = frames[:, 1:].reshape(b * (n - 1), *frames.shape[2:])
        pairs = None
        if speeds is not None:
            check_tensor("speeds", speeds, (b, n))
            pairs = torch.stack((speeds[:, :-1], speeds[:, 1:]), dim=-1).reshape(b * (n - 1), 2)
        return self.codes(obs, future, pairs).view(b, n - 1, -1)


def batch_speeds(lam: LatentActionModel, batch, who: str) -> torch.Tensor | None:
    """A TransitionBatch's speeds (B, 1 + K) when `lam` reads odometry (then they are required), else
    None: what every stage that feeds a LAM passes as its `speeds`."""
    if not lam.config.odometry:
        return None
    if batch.speeds is None:
        raise ValueError(
            f"{who}: expected batches read with speeds=True for a LAM with odometry, got batches without speeds"
        )
    return batch.speeds


def rigid_warp(x: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """Move images x (B, C, H, W) rigidly: motion (B, 3) = (tx, ty, angle), translations in units of
    half the image side (grid_sample's normalised coordinates), angle in radians; zeros flow in."""
    cos, sin = motion[:, 2].cos(), motion[:, 2].sin()
    theta = torch.stack(
        (torch.stack((cos, -sin, motion[:, 0]), dim=-1), torch.stack((sin, cos, motion[:, 1]), dim=-1)), dim=1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def save_lam(model: LatentActionModel, directory: str | os.PathLike) -> Path:
    """A LAM folder (safetensors + JSON), written as an export (`automot.export`: never destroys other files)."""
    with export_directory(directory, "lam", legacy=lambda path: (path / CONFIG).is_file()) as tmp:
        save_safetensors_atomic(model.state_dict(), tmp / WEIGHTS, metadata={"format": str(FORMAT)})
        write_json_atomic(
            tmp / CONFIG,
            {"format": FORMAT, "config": asdict(model.config), "image_size": list(model.image_size)},
        )
    return Path(directory)


def load_lam(directory: str | os.PathLike, *, device: torch.device | str = "cpu") -> LatentActionModel:
    """A LAM folder -> LatentActionModel in eval mode; the weights are checked strictly."""
    directory = Path(directory)
    path = directory / CONFIG
    if not path.exists():
        raise ValueError(f"latent action model: expected {path} (written by save_lam), found none")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: expected format {FORMAT}, got {meta.get('format')!r}")
    model = LatentActionModel(LAMConfig.from_dict(meta["config"]), tuple(meta["image_size"]))
    load_state_dict_strict(model, load_safetensors(directory / WEIGHTS), source=str(directory / WEIGHTS))
    return model.to(device).eval()
