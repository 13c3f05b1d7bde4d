"""The distilled student: a small planner with no understanding expert (LatentVLA's efficient
vision-based planner; here a BEV CNN + a transformer decoder of a few million parameters).

Axes: B batch, N BEV tokens, K decision queries (3), Q planning queries (26), L teacher tokens,
D_t teacher width, D student width, M latent tokens, V codebook entries.

    BEV (B, 4, Hb, Wb) -> strided convs -> grid tokens (B, N, D);  target point, ego state -> 2 tokens
    teacher-token predictor: L learned queries, one cross-attention to [BEV ; state], Linear
        -> (B, L, D_t) = the student's estimate of the teacher's embeddings (the AE's final hidden
        states, layer-normed)
    StudentHead (`heads.student`): decision + planning queries cross-attend to
        [BEV ; ego ; K/V tokens], K/V tokens = the teacher's embeddings (training, per sample with
        probability `teacher_forcing`) or the predicted ones (otherwise, and always at inference)
    decoded decision queries -> meta-action logits (B, K, 5) / (B, K, 4) and latent-action logits
        (B, K, M, V); decoded planning queries -> Plan (waypoints (B, 6, 2), route (B, 20, 2))

At inference it runs alone: no UE, no teacher. LatentVLA fuses the VLM's visual and action
embeddings into the planner as keys/values of a BEV cross-attention during training; how the
deployed student replaces them is not public. Predicting them from the student's own BEV features
(trained to match the teacher's, and used for the rest of the samples while training so the decoder
knows them) is this library's choice.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from automot import spec
from automot.checks import check_positive, check_tensor
from automot.export import export_directory
from automot.io import (
    load_safetensors,
    load_state_dict_strict,
    save_safetensors_atomic,
    write_json_atomic,
)
from automot.types import SensorBatch
from heads.blocks import Attention
from heads.student import StudentHead, StudentHeadConfig
from heads.types import ActionContext, ContextDims, Plan
from latent.latent_head import LatentActionHead, LatentHeadConfig
from mot.config import DECISION_SETS
from mot.decision import DecisionHead
from mot.encoders import BEVTokens, StateTokens

WEIGHTS = "student.safetensors"
CONFIG = "student_config.json"
FORMAT = 1


@dataclass
class StudentConfig:
    """dim/depth/num_heads: the decoder (`StudentHeadConfig`); bev_*: the BEV CNN; teacher_tokens /
    teacher_dim: the teacher embeddings it distils (0 = none); latent_tokens / codebook_size: the
    latent actions it predicts (0 = none); decision_set: as `MoTConfig.decision_set`."""

    dim: int = 128
    depth: int = 2
    num_heads: int = 4
    bev_channels: tuple[int, ...] = (32, 64, 128)
    bev_grid: tuple[int, int] = (8, 8)
    target_scale_m: float = 20.0
    teacher_tokens: int = 0
    teacher_dim: int = 0
    teacher_forcing: float = 0.5
    latent_tokens: int = 0
    codebook_size: int = 0
    decision_set: str = "full"
    head: dict[str, Any] = field(default_factory=dict)  # further StudentHeadConfig fields (e.g. plan)
    seed: int = 0

    def __post_init__(self) -> None:
        self.bev_channels = tuple(self.bev_channels)
        self.bev_grid = tuple(self.bev_grid)
        if (self.teacher_tokens > 0) != (self.teacher_dim > 0):
            raise ValueError(
                f"StudentConfig.teacher_tokens / teacher_dim: expected both > 0 or both 0, got "
                f"{self.teacher_tokens}, {self.teacher_dim}"
            )
        if (self.latent_tokens > 0) != (self.codebook_size > 0):
            raise ValueError(
                f"StudentConfig.latent_tokens / codebook_size: expected both > 0 or both 0, got "
                f"{self.latent_tokens}, {self.codebook_size}"
            )
        if not 0 <= self.teacher_forcing <= 1:
            raise ValueError(
                f"StudentConfig.teacher_forcing: expected a value in [0, 1], got {self.teacher_forcing}"
            )
        check_positive("StudentConfig.target_scale_m", self.target_scale_m)
        if self.decision_set not in DECISION_SETS:
            raise ValueError(
                f"StudentConfig.decision_set: expected one of {sorted(DECISION_SETS)}, got {self.decision_set!r}"
            )

    def head_config(self) -> StudentHeadConfig:
        return StudentHeadConfig(dim=self.dim, depth=self.depth, num_heads=self.num_heads, **self.head)


@dataclass
class StudentOutput:
    """lateral_logits (B, K, 5) or None; longitudinal_logits (B, K, n_lon) (None with with_aux=False);
    latent_logits (B, K, M, V) or None; predicted_teacher (B, L, D_t) or None; context: the decoder's
    input; plan or None."""

    lateral_logits: torch.Tensor | None
    longitudinal_logits: torch.Tensor | None
    latent_logits: torch.Tensor | None
    predicted_teacher: torch.Tensor | None
    context: ActionContext
    plan: Plan | None


class StudentPlanner(nn.Module):
    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.config = c = config
        k = len(spec.DECISION_HORIZONS_S)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.bev_tokens = BEVTokens(len(spec.BEV_CHANNELS), c.bev_channels, c.bev_grid, c.dim, 0.02)
            self.state_tokens = StateTokens(c.dim, True, c.target_scale_m)
            self.decision_queries = nn.Parameter(torch.randn(k, c.dim) * 0.02)
            self.plan_queries = nn.Parameter(
                torch.randn(spec.NUM_WAYPOINTS + spec.NUM_ROUTE_POINTS, c.dim) * 0.02
            )
            if c.teacher_tokens:
                self.teacher_queries = nn.Parameter(torch.randn(c.teacher_tokens, c.dim) * 0.02)
                self.teacher_norm = nn.LayerNorm(c.dim)
                self.teacher_attn = Attention(c.dim, c.num_heads)
                self.teacher_out = nn.Linear(c.dim, c.teacher_dim)
            self.context_dims = ContextDims(latent_dim=c.dim, reasoning_dim=c.teacher_dim)
            self.head = StudentHead(self.context_dims, c.head_config())
            lateral, longitudinal = DECISION_SETS[c.decision_set]
            self.decision_head = DecisionHead(
                c.dim, None if lateral is None else len(lateral), len(longitudinal)
            )
            self.latent_head = (
                LatentActionHead(LatentHeadConfig(c.dim, c.latent_tokens, c.codebook_size))
                if c.latent_tokens
                else None
            )

    def forward(
        self,
        sensors: SensorBatch,
        *,
        teacher_tokens: torch.Tensor | None = None,
        use_teacher: torch.Tensor | None = None,
        with_plan: bool = True,
        with_aux: bool = True,
    ) -> StudentOutput:
        """sensors (B, ...) -> StudentOutput. Training may pass the teacher's (layer-normed) embeddings
        teacher_tokens (B, L, D_t) and use_teacher (B,) bool: those samples' decoders read them as
        keys/values instead of the predicted ones. `with_aux=False` (driving) skips the meta-action
        and latent-action logits (None). The RGB frames and history are not used."""
        c = self.config
        b = sensors.batch_size
        dev = self.decision_queries.device
        check_tensor("SensorBatch.bev", sensors.bev, (b, len(spec.BEV_CHANNELS), None, None))
        bev = self.bev_tokens(sensors.bev.to(dev))
        ego_state, ego_history = sensors.ego_state.to(dev), sensors.ego_history.to(dev)
        state = self.state_tokens(sensors.target_point.to(dev), ego_state, ego_history)
        memory = torch.cat((bev, state), dim=1)
        predicted = None
        kv = None
        if c.teacher_tokens:
            q = self.teacher_queries.expand(b, -1, -1)
            predicted = self.teacher_out(self.teacher_attn(q, self.teacher_norm(memory)))
            kv = predicted
            if teacher_tokens is not None:
                check_tensor("teacher_tokens", teacher_tokens, (b, c.teacher_tokens, c.teacher_dim))
                mask = (
                    torch.ones(b, dtype=torch.bool, device=dev)
                    if use_teacher is None
                    else use_teacher.to(dev)
                )
                kv = torch.where(mask[:, None, None], teacher_tokens.to(dev, predicted.dtype), predicted)
        ctx = ActionContext(
            plan_latents=self.plan_queries.expand(b, -1, -1),
            decision_latents=self.decision_queries.expand(b, -1, -1),
            bev_tokens=memory,
            ego_state=ego_state,
            ego_history=ego_history,
            reasoning_tokens=kv,
        )
        decoded = self.head.decode(ctx)
        lateral = longitudinal = latent = None
        if with_aux:
            lateral, longitudinal = self.decision_head(decoded.decision)
            latent = self.latent_head(decoded.decision) if self.latent_head is not None else None
        plan = self.head.plan_from(ctx, decoded) if with_plan else None
        return StudentOutput(lateral, longitudinal, latent, predicted, ctx, plan)


def normalize_teacher_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """The teacher embeddings as the student sees them: layer-normed per token, no affine (B, L, D_t)."""
    return F.layer_norm(tokens, tokens.shape[-1:])


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_student(student: StudentPlanner, directory: str | os.PathLike) -> Path:
    """A student folder (safetensors + JSON), written as an export (`automot.export`: never destroys other files)."""
    with export_directory(directory, "student", legacy=lambda path: (path / CONFIG).is_file()) as tmp:
        save_safetensors_atomic(student.state_dict(), tmp / WEIGHTS, metadata={"format": str(FORMAT)})
        write_json_atomic(tmp / CONFIG, {"format": FORMAT, "config": asdict(student.config)})
    return Path(directory)


def load_student(directory: str | os.PathLike, *, device: torch.device | str = "cpu") -> StudentPlanner:
    """A student folder -> StudentPlanner in eval mode (weights checked strictly)."""
    directory = Path(directory)
    path = directory / CONFIG
    if not path.exists():
        raise ValueError(f"student: expected {path} (written by save_student), found none")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: expected format {FORMAT}, got {meta.get('format')!r}")
    student = StudentPlanner(StudentConfig(**meta["config"]))
    load_state_dict_strict(student, load_safetensors(directory / WEIGHTS), source=str(directory / WEIGHTS))
    return student.to(device).eval()
