"""The distilled student as a closed-loop `automot.types.Policy`: one student pass per step, batch of
one, no understanding expert and no teacher anywhere (the folder holds only the student)."""

from __future__ import annotations

import os
import time

import torch

from automot.types import EpisodeInfo, Observation, PolicyOutput, SensorBatch
from latent.student import StudentPlanner, load_student


class StudentPolicy:
    def __init__(self, student: StudentPlanner) -> None:
        self.student = student.eval()
        self.last_latency_s = 0.0

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, *, device: torch.device | str = "cpu"
    ) -> StudentPolicy:
        return cls(load_student(directory, device=device))

    def identity(self) -> str:
        """A digest of the student's weights and config (episode records carry it)."""
        from dataclasses import asdict

        from automot.digest import state_digest

        return state_digest(self.student.state_dict(), {"student": asdict(self.student.config)})

    def reset(self, episode: EpisodeInfo | None = None) -> None:
        """The student keeps no state between steps."""

    @torch.no_grad()
    def plan(self, observation: Observation) -> PolicyOutput:
        start = time.perf_counter()
        out = self.student(SensorBatch.from_observations([observation]), with_aux=False)
        self.last_latency_s = time.perf_counter() - start
        return PolicyOutput(
            waypoints=out.plan.waypoints[0].cpu().numpy(),
            route=out.plan.route[0].cpu().numpy(),
            info={"latency_s": self.last_latency_s},
        )
