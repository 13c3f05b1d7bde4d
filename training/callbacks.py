"""Closed-loop validation during training, and checkpoint selection by how the policy drives.

Open-loop L2 says little about driving (a policy 3x better than constant velocity in L2 can drive
worse than it), so `ClosedLoopValidation` drives a few validation-split episodes every
`every_n_steps` training steps (and after the last one) with the stage's evaluation weights (the EMA
when on), through exactly the path `automot eval --closed-loop` takes (`FastSlowPlanner` +
`training.evaluate.evaluate_closed_loop`), and logs

    val/ds, val/sr, val/route_completion, val/completed, val/collision, val/offroad, val/timeout,
    val/l2_avg (open loop on a few validation batches: the tie-break)

With `select=True` the weights of the best evaluation (highest DS, ties by lower L2, then the earlier
step) are the ones the stage exports. The callback's state (history, best weights) is saved in
Lightning checkpoints, and its evaluation runs before Lightning's checkpoint callback in the same hook,
so a run killed and resumed selects exactly what an uninterrupted one does. Global random states are
restored after each evaluation: training with the callback follows the same trajectory as without.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch

from automot.checks import check_positive
from automot.io import write_json_atomic

OUTCOMES = ("completed", "collision", "offroad", "timeout")


@dataclass
class ClosedLoopValConfig:
    """Which episodes to drive and how often. Sizes and overrides must match the evaluation's."""

    every_n_steps: int = 200
    scenarios: list[str] = field(default_factory=lambda: ["highway", "merge", "roundabout", "intersection"])
    episodes: int = 2  # per scenario, validation-split seeds
    seed_start: int = 0  # first seed offset inside the validation split
    refresh_every: int = 2  # the planner's UE refresh period
    sampling_seed: int = 0
    image_size: int = 64  # camera height = width, as the policy was trained with
    turn_signals: bool = (
        False  # the BEV's blinkers (`BEVConfig.turn_signals`), as the policy was trained with
    )
    vehicle_trail_s: float = 0.0  # the BEV's motion trails (`BEVConfig.vehicle_trail_s`), likewise
    scenario_overrides: dict[str, dict] = field(default_factory=dict)
    l2_batches: int = 4  # validation batches for the open-loop tie-break (0: none)
    select: bool = True  # export the best evaluation's weights instead of the last ones
    history_path: str | None = None  # JSON file of every evaluation, rewritten after each

    def __post_init__(self) -> None:
        from driving.scenarios import available_scenarios

        for name in ("every_n_steps", "episodes", "refresh_every", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ClosedLoopValConfig.{name}: expected an int >= 1, got {value!r}")
        check_positive("ClosedLoopValConfig.l2_batches", self.l2_batches, allow_zero=True)
        self.scenarios = list(self.scenarios)
        known = available_scenarios()
        bad = [s for s in self.scenarios if s not in known]
        if not self.scenarios or bad:
            raise ValueError(
                f"ClosedLoopValConfig.scenarios: expected names from {known}, got {self.scenarios}"
            )

    def seeds(self) -> list[int]:
        from driving.scenarios import split_seeds

        return split_seeds("val", self.episodes, self.seed_start)

    def eval_config(self):
        from driving import EvalConfig
        from driving.config import BEVConfig, CameraConfig, SensorConfig

        size = self.image_size
        return EvalConfig(
            sensors=SensorConfig(
                camera=CameraConfig(height=size, width=size),
                bev=BEVConfig(turn_signals=self.turn_signals, vehicle_trail_s=self.vehicle_trail_s),
            )
        )

    def scenario_objects(self) -> list:
        from driving.scenarios import build_scenario

        return [build_scenario(s, **self.scenario_overrides.get(s, {})) for s in self.scenarios]


def drive_validation(backbone, config: ClosedLoopValConfig) -> dict:
    """Closed-loop summary (`driving.scoring.summarize` + outcome counts) of `backbone` on the validation
    episodes of `config`: the same numbers `automot eval --closed-loop --split val` gives."""
    from mot.runtime import FastSlowPlanner
    from training.evaluate import evaluate_closed_loop

    planner = FastSlowPlanner(backbone, refresh_every=config.refresh_every, seed=config.sampling_seed)
    return evaluate_closed_loop(
        planner, config.scenario_objects(), config.seeds(), eval_config=config.eval_config()
    )


class ClosedLoopValidation(L.Callback):
    def __init__(self, config: ClosedLoopValConfig | None = None, **overrides) -> None:
        if config is not None and overrides:
            raise ValueError(
                f"ClosedLoopValidation: pass either config or overrides, got both ({sorted(overrides)})"
            )
        self.config = config if config is not None else ClosedLoopValConfig(**overrides)
        self.history: list[dict] = []
        self.best: dict | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    @property
    def state_key(self) -> str:
        return "ClosedLoopValidation"

    # -- when -------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.config.every_n_steps == 0 and not self._done(step):
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self._done(trainer.global_step):
            self.evaluate(trainer, pl_module)
        if self.config.select and self.best_state is not None:
            pl_module.export_state = self.best_state

    def _done(self, step: int) -> bool:
        return any(h["step"] == step for h in self.history)

    # -- what -------------------------------------------------------------------------------------
    def evaluate(self, trainer, pl_module) -> dict:
        """Drive the validation episodes now; log, remember and (maybe) keep these weights."""
        config = self.config
        states = (random.getstate(), np.random.get_state())
        was_training = pl_module.training
        try:
            with torch.random.fork_rng(devices=[]), torch.no_grad(), pl_module.evaluation_weights():
                summary = drive_validation(pl_module.backbone, config)
                l2 = self._open_loop_l2(trainer, pl_module)
                snapshot = {k: v.detach().clone() for k, v in pl_module.ae.state_dict().items()}
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            pl_module.train(was_training)
        outcomes = summary.get("outcomes", {})
        entry = {
            "step": int(trainer.global_step),
            "ds": float(summary["ds"]),
            "sr": float(summary["sr"]),
            "route_completion": float(summary["route_completion"]),
            "l2_avg": l2,
            **{k: int(outcomes.get(k, 0)) for k in OUTCOMES},
            "per_scenario": {s: round(float(b["ds"]), 4) for s, b in summary["per_scenario"].items()},
        }
        self.history.append(entry)
        if self.best is None or _better(entry, self.best):
            self.best, self.best_state = entry, snapshot
        metrics = {
            f"val/{k}": float(v)
            for k, v in entry.items()
            if k not in ("step", "per_scenario") and v is not None
        }
        metrics.update({f"val/ds_{s}": v for s, v in entry["per_scenario"].items()})
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        if config.history_path is not None:
            write_json_atomic(
                config.history_path, {"config": asdict(config), "history": self.history, "best": self.best}
            )
        return entry

    def _open_loop_l2(self, trainer, pl_module) -> float | None:
        if not self.config.l2_batches or trainer.datamodule is None:
            return None
        dirs = getattr(trainer.datamodule, "dirs", {}).get("val")
        if dirs is None:
            return None
        from training.metrics import PlanL2

        metric = PlanL2("stp3")
        generator = torch.Generator().manual_seed(self.config.sampling_seed)
        for i, batch in enumerate(trainer.datamodule.val_dataloader()):
            if i >= self.config.l2_batches:
                break
            out = pl_module.forward_ae(batch, with_plan=True, generator=generator)
            metric.update(out.plan.waypoints.float(), batch.waypoints)
        return round(float(metric.compute()["l2_avg"]), 6)

    # -- resume -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"history": self.history, "best": self.best, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
        self.best = state_dict.get("best")
        self.best_state = state_dict.get("best_state")


def _better(a: dict, b: dict) -> bool:
    """Higher DS wins; equal DS: lower open-loop L2; otherwise the earlier evaluation stays."""
    if a["ds"] != b["ds"]:
        return a["ds"] > b["ds"]
    if a["l2_avg"] is not None and b["l2_avg"] is not None and a["l2_avg"] != b["l2_avg"]:
        return a["l2_avg"] < b["l2_avg"]
    return False


def read_history(path: str | Path) -> dict:
    import json

    return json.loads(Path(path).read_text())
