"""What a multi-seed variance study runs (issue 6; paper table 9): heads x training seeds x sampling
seeds x scenarios x evaluation episodes, plus the data, the stages and the baselines.

`StudyConfig` nests small validated dataclasses; `PROFILES` are named starting points (`demo`, the
README's main job; `full`, a real study; `smoke`, the tests), and a YAML/JSON file or flags override
them. The config is stored in the study folder and a resumed study must match it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from automot.checks import check_positive
from automot.config import build_config
from automot.registry import Registry

ALL_SCENARIOS = ["highway", "merge", "roundabout", "intersection"]
BASELINES = ("expert", "constant_velocity")


@dataclass
class DataSpec:
    scenarios: list[str] = field(default_factory=lambda: list(ALL_SCENARIOS))
    train_episodes: int = 12  # per scenario, train-split seeds
    val_episodes: int = 3  # per scenario, val-split seeds
    test_episodes: int = 3  # open-loop test set, per scenario, test-split seeds
    image_size: int = 64
    duration_s: float | None = None  # episode time limit; None = each scenario's default
    density: float = 1.0

    def __post_init__(self) -> None:
        if not self.scenarios:
            raise ValueError("DataSpec.scenarios: expected at least one scenario, got none")
        for name in ("train_episodes", "val_episodes", "test_episodes", "image_size"):
            check_positive(f"DataSpec.{name}", getattr(self, name))
        check_positive("DataSpec.density", self.density)
        if self.duration_s is not None:
            check_positive("DataSpec.duration_s", self.duration_s)


@dataclass
class TrainSpec:
    steps: int = 800
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "lr"):
            check_positive(f"TrainSpec.{name}", getattr(self, name))
        check_positive("TrainSpec.warmup_steps", self.warmup_steps, allow_zero=True)


@dataclass
class HeadSpec:
    """A planning head by registry name; `label` names it in reports (default: the name)."""

    name: str
    label: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"HeadSpec.name: expected a registered head name, got {self.name!r}")
        if not isinstance(self.kwargs, dict):
            raise ValueError(f"HeadSpec.kwargs: expected a mapping of the head's config, got {self.kwargs!r}")

    @property
    def key(self) -> str:
        return self.label or self.name


@dataclass
class EvalSpec:
    episodes: int = 3  # closed-loop episodes per scenario, test-split seeds
    refresh_every: int = 2  # UE cache refresh period k of the fast-slow planner
    open_loop: bool = True

    def __post_init__(self) -> None:
        check_positive("EvalSpec.episodes", self.episodes)
        check_positive("EvalSpec.refresh_every", self.refresh_every)


@dataclass
class StudyConfig:
    preset: str = "tiny"
    data: DataSpec = field(default_factory=DataSpec)
    pretrain_ue_steps: int = 200  # 0: a randomly initialised UE (the paper's "w/o pretrained UE")
    ae: TrainSpec = field(default_factory=lambda: TrainSpec(steps=800, lr=2e-3))
    refiner: TrainSpec = field(default_factory=lambda: TrainSpec(steps=400, lr=1e-3))
    heads: list[HeadSpec] = field(
        default_factory=lambda: [
            HeadSpec("mlp"),
            HeadSpec("diffusion", kwargs={"refiner": {"dim": 128, "depth": 3, "moa": {"num_heads": 4}}}),
        ]
    )
    training_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    sampling_seeds: list[int] = field(default_factory=lambda: [0, 1])
    eval: EvalSpec = field(default_factory=EvalSpec)
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    bootstrap_samples: int = 10_000

    def __post_init__(self) -> None:
        self.heads = [h if isinstance(h, HeadSpec) else build_config(HeadSpec, h) for h in self.heads]
        keys = [h.key for h in self.heads]
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"StudyConfig.heads: expected distinct head labels, got {keys}")
        if "mlp" not in [h.name for h in self.heads]:
            raise ValueError(
                "StudyConfig.heads: expected an 'mlp' head (the AE stage trains it; refiners wrap it)"
            )
        for name in ("training_seeds", "sampling_seeds"):
            seeds = list(getattr(self, name))
            if not seeds or len(set(seeds)) != len(seeds):
                raise ValueError(f"StudyConfig.{name}: expected distinct seeds, got {seeds}")
        bad = sorted(set(self.baselines) - set(BASELINES))
        if bad:
            raise ValueError(f"StudyConfig.baselines: expected names from {list(BASELINES)}, got {bad}")
        check_positive("StudyConfig.pretrain_ue_steps", self.pretrain_ue_steps, allow_zero=True)
        check_positive("StudyConfig.bootstrap_samples", self.bootstrap_samples)

    def head(self, key: str) -> HeadSpec:
        for h in self.heads:
            if h.key == key:
                return h
        raise ValueError(f"head: expected one of {[h.key for h in self.heads]}, got {key!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: Registry[StudyConfig] = Registry("study profile")


@PROFILES.register("demo")
def _demo() -> StudyConfig:
    """The main job: ~10 minutes on 2 cores (3 training seeds x 2 sampling seeds, 4 scenarios)."""
    return StudyConfig()


@PROFILES.register("full")
def _full() -> StudyConfig:
    """A real study: more data, longer training, 5 training x 4 sampling seeds, 10 episodes per scenario."""
    return StudyConfig(
        data=DataSpec(train_episodes=60, val_episodes=10, test_episodes=10),
        pretrain_ue_steps=1000,
        ae=TrainSpec(steps=4000, lr=2e-3),
        refiner=TrainSpec(steps=2000, lr=1e-3),
        training_seeds=[0, 1, 2, 3, 4],
        sampling_seeds=[0, 1, 2, 3],
        eval=EvalSpec(episodes=10),
    )


@PROFILES.register("smoke")
def _smoke() -> StudyConfig:
    """The tests: minutes of CPU in total, every code path of a study."""
    return StudyConfig(
        data=DataSpec(
            scenarios=["highway"], train_episodes=4, val_episodes=1, test_episodes=1, duration_s=10.0
        ),
        pretrain_ue_steps=8,
        ae=TrainSpec(steps=30, batch_size=16, lr=2e-3, warmup_steps=5),
        refiner=TrainSpec(steps=20, batch_size=16, lr=1e-3, warmup_steps=5),
        heads=[
            HeadSpec("mlp"),
            HeadSpec("diffusion", kwargs={"refiner": {"dim": 32, "depth": 1, "moa": {"num_heads": 4}}}),
        ],
        training_seeds=[0, 1],
        sampling_seeds=[0, 1],
        eval=EvalSpec(episodes=1),
        bootstrap_samples=2000,
    )


def load_study_config(profile: str = "demo", overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A profile with nested overrides (from a YAML/JSON file or flags) applied on top."""
    base = asdict(PROFILES.build(profile))
    merged = _merge(base, overrides or {})
    return build_config(StudyConfig, merged)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out
