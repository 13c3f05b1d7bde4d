"""What a multi-seed variance study runs (issue 6; paper table 9): heads x training seeds x sampling
seeds x scenarios x evaluation episodes, plus the data, the stages and the baselines.

`StudyConfig` nests small validated dataclasses; `PROFILES` are named starting points (`demo`, the
README's main job; `reference`, the headline study; `full`, a larger study; `smoke`, the tests;
`latent` and `latent_smoke`, the latent-action study of `studies.latent`), and a YAML/JSON file or flags
override them. The config is stored in the study folder and a resumed study must match it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from automot.checks import check_name_list, check_positive
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
    # Other vehicles' blinkers in the BEV (`driving.signals`; `BEVConfig.turn_signals`), in the
    # demonstrations, the DAgger rollouts and every closed-loop run of the study alike.
    turn_signals: bool = False
    # The other vehicles' motion trails in the BEV over the last seconds (`BEVConfig.vehicle_trail_s`),
    # likewise everywhere in the study; 0: off
    vehicle_trail_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.scenarios:
            raise ValueError("DataSpec.scenarios: expected at least one scenario, got none")
        for name in ("train_episodes", "val_episodes", "test_episodes", "image_size"):
            check_positive(f"DataSpec.{name}", getattr(self, name))
        check_positive("DataSpec.density", self.density)
        if not isinstance(self.turn_signals, bool):
            raise ValueError(f"DataSpec.turn_signals: expected a bool, got {self.turn_signals!r}")
        if self.duration_s is not None:
            check_positive("DataSpec.duration_s", self.duration_s)
        from driving.config import BEVConfig, SimConfig, check_trail

        try:
            check_trail(BEVConfig(vehicle_trail_s=self.vehicle_trail_s), SimConfig())
        except ValueError as err:
            raise ValueError(f"DataSpec.vehicle_trail_s: {err}") from None


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
class DartSpec:
    """Perturbed expert demonstrations for the train split (`driving.onpolicy`): noise on the executed
    acceleration (m/s^2) and steering (rad), labels the expert's noiseless plan. All zero: the classic
    collection (labels cut from the driven future)."""

    acceleration_std: float = 0.0
    lateral_accel_std: float = 0.0
    correlation_s: float = 1.0
    episode_fraction: float = 1.0

    def __post_init__(self) -> None:
        for name in ("acceleration_std", "lateral_accel_std"):
            check_positive(f"DartSpec.{name}", getattr(self, name), allow_zero=True)
        check_positive("DartSpec.correlation_s", self.correlation_s)
        if not 0.0 <= self.episode_fraction <= 1.0:
            raise ValueError(
                f"DartSpec.episode_fraction: expected a value in [0, 1], got {self.episode_fraction}"
            )

    @property
    def active(self) -> bool:
        return self.episode_fraction > 0 and (self.acceleration_std > 0 or self.lateral_accel_std > 0)


def _check_rollouts(spec, name: str) -> None:
    """The rollout fields shared by `DaggerSpec` and `RefinerDaggerSpec`, checked under `name`."""
    if isinstance(spec.noise, dict):
        spec.noise = DartSpec(**spec.noise)
    check_positive(f"{name}.rounds", spec.rounds, allow_zero=True)
    spec.extra_scenarios = list(spec.extra_scenarios)
    if len(set(spec.extra_scenarios)) != len(spec.extra_scenarios):
        raise ValueError(
            f"{name}.extra_scenarios: expected distinct scenario names, got {spec.extra_scenarios}"
        )
    check_positive(f"{name}.extra_episodes", spec.extra_episodes, allow_zero=True)
    if bool(spec.extra_scenarios) != (spec.extra_episodes > 0):
        raise ValueError(
            f"{name}.extra_episodes: expected > 0 exactly when extra_scenarios are named, got "
            f"{spec.extra_episodes} with extra_scenarios {spec.extra_scenarios}"
        )
    if spec.scenarios is not None:
        spec.scenarios = list(spec.scenarios)
        if not spec.scenarios or len(set(spec.scenarios)) != len(spec.scenarios):
            raise ValueError(f"{name}.scenarios: expected distinct scenario names, got {spec.scenarios}")
    check_positive(f"{name}.episodes", spec.episodes)
    if not 0.0 <= spec.beta <= 1.0:
        raise ValueError(f"{name}.beta: expected a value in [0, 1], got {spec.beta}")


class _Rollouts:
    """What `DaggerSpec` and `RefinerDaggerSpec` share about their rollouts (fields `scenarios`,
    `extra_scenarios`; validated by `_check_rollouts`)."""

    scenarios: list[str] | None
    extra_scenarios: list[str]

    def scenarios_of(self, data_scenarios: list[str]) -> list[str]:
        """The scenarios the rounds roll out: `scenarios`, else all of the study's."""
        return list(self.scenarios) if self.scenarios is not None else list(data_scenarios)

    @property
    def has_extra(self) -> bool:
        return bool(self.extra_scenarios)


@dataclass
class DaggerSpec(_Rollouts):
    """On-policy rounds after behaviour cloning: roll out the current policy of each training seed on fresh
    train-split seeds, label every visited state with the expert, fine-tune on everything so far."""

    rounds: int = 0  # 0: behaviour cloning only
    episodes: int = 4  # per scenario and round
    scenarios: list[str] | None = None  # the scenarios rolled out (None: all of the study's)
    # More rollouts where the policy fails most: `extra_episodes` per round in each of `extra_scenarios`
    # besides the `episodes` above, on seeds of their own (after every round's regular seeds).
    extra_scenarios: list[str] = field(default_factory=list)
    extra_episodes: int = 0
    beta: float = 0.0  # probability per step of executing the expert's command, round 1
    beta_decay: float = 0.5  # beta of round r = beta * beta_decay ** (r - 1)
    steps: int = 400  # fine-tuning steps per round, from the previous round's policy
    lr: float = 1e-3
    warmup_steps: int = 20
    noise: DartSpec = field(default_factory=DartSpec)  # DART noise on the rollouts too

    def __post_init__(self) -> None:
        _check_rollouts(self, "DaggerSpec")
        for name in ("steps", "lr"):
            check_positive(f"DaggerSpec.{name}", getattr(self, name))
        check_positive("DaggerSpec.warmup_steps", self.warmup_steps, allow_zero=True)
        if not 0.0 <= self.beta_decay <= 1.0:
            raise ValueError(f"DaggerSpec.beta_decay: expected a value in [0, 1], got {self.beta_decay}")

    def extra_seed_start(self, train_episodes: int, round_index: int) -> int:
        """First train-split seed of round `round_index`'s extra rollouts: after the demonstrations and
        every round's regular rollouts, `extra_episodes` new ones per round."""
        return train_episodes + self.rounds * self.episodes + (round_index - 1) * self.extra_episodes

    def beta_of(self, round_index: int) -> float:
        return self.beta * self.beta_decay ** (round_index - 1)

    @property
    def seeds_used(self) -> int:
        """Train-split seeds per scenario that all rounds use (regular + extra) after the demonstrations."""
        return self.rounds * (self.episodes + self.extra_episodes)


@dataclass
class RefinerDaggerSpec(_Rollouts):
    """DAgger for the refining heads, after the AE's rounds: roll out each refining head's current
    policy (sampling seed 0) on fresh train-split seeds, label every visited state with the expert, and
    train the refiner again from scratch (the `refiner` settings, around the same final MLP policy) on
    the AE's training data plus that head's rollouts so far. The AE's rounds never show a refiner the
    states its own plans lead to; these do. Rollout seeds come after every seed the AE's rounds used;
    round r's regular rollouts first, then its extra ones."""

    rounds: int = 0  # 0: the refiner trains once, on the AE's data
    episodes: int = 4  # per scenario and round
    scenarios: list[str] | None = None  # None: all of the study's
    extra_scenarios: list[str] = field(default_factory=list)
    extra_episodes: int = 0
    beta: float = 0.0  # probability per step of executing the expert's command
    noise: DartSpec = field(default_factory=DartSpec)

    def __post_init__(self) -> None:
        _check_rollouts(self, "RefinerDaggerSpec")

    def seed_start(self, after: int, round_index: int) -> int:
        """First train-split seed of round `round_index`'s regular rollouts, the first `after` seeds
        being taken (the demonstrations and the AE's rounds); its extra ones follow them."""
        return after + (round_index - 1) * (self.episodes + self.extra_episodes)


VALIDATED_STAGES = ("ae", "refiner")


@dataclass
class ValidationSpec:
    """Closed-loop validation while a stage trains (`training.callbacks`): every `every_n_steps` (0: off)
    drive `episodes` validation-split episodes per scenario; export the best by DS (ties: L2).

    stages: which trainings it watches: "ae" (behaviour cloning and every DAgger round of the AE +
            MLP head) and/or "refiner" (every training of a refining head, refiner-DAgger rounds
            included; the refiner is driven with sampling seed 0)."""

    every_n_steps: int = 0
    episodes: int = 1
    select: bool = True
    stages: list[str] = field(default_factory=lambda: ["ae"])

    def __post_init__(self) -> None:
        check_positive("ValidationSpec.every_n_steps", self.every_n_steps, allow_zero=True)
        check_positive("ValidationSpec.episodes", self.episodes)
        self.stages = check_name_list(
            "ValidationSpec.stages", self.stages, VALIDATED_STAGES, allow_empty=False
        )


@dataclass
class LatentSpec:
    """The latent-action study (`studies.latent`): LAM on unlabeled episodes -> AE pretraining on its
    codes -> fine-tuning at each label fraction (pretrained and from scratch) -> distillation of the
    pretrained teacher at `distill_fraction` into the UE-free student.

    unlabeled:          "strip": the labeled train episodes with their labels thrown away
                        (`latent.data.strip_labels`; labels then exist for a share of the same pool);
                        "collect": `unlabeled_episodes` per scenario collected without labels (train-split
                        seeds, the labeled ones first).
    closed_loop_fractions: the label fractions whose arms are also driven in closed loop (None = all;
                        open-loop metrics are computed for every arm).
    lam / student:      `latent.config.LAMConfig` / `latent.student.StudentConfig` fields.
    pretrain_speed_weight: the pretraining also predicts the ego speed at each decision horizon from
                        the future observations' ego state (odometry, not a label) with this weight
                        (`training.stages.latent_pretrain`; 0: the LAM's codes only).
    pretrain_plan_weight: the AE's waypoint queries (what the planning head reads) also predict the LAM's
                        codes of the transition their time falls in, with this weight
                        (`training.stages.latent_pretrain`; 0: the decision queries only).
    pretrain_hidden:    action-token groups the pretraining keeps out of attention, e.g. ["ego"]: the
                        pretrained layers never read the ego token (`training.stages.latent_pretrain`;
                        empty: every token, the default).
    finetune_latent_weight: the pretrained arm's fine-tuning also trains the AE on the LAM's codes of
                        its batches with this weight (0: the latent head follows the AE detached).
    finetune_pretrained_lr_scale: the pretrained arm's learning-rate multiplier for the AE layers it
                        brings from pretraining (its planning head trains at `finetune.lr`).
    """

    unlabeled: str = "collect"
    unlabeled_episodes: int = 12
    closed_loop_fractions: list[float] | None = None
    label_fractions: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.25, 1.0])
    fraction_seed: int = 0
    lam: dict[str, Any] = field(default_factory=dict)
    lam_train: TrainSpec = field(default_factory=lambda: TrainSpec(steps=1500, batch_size=32, lr=1e-3))
    pretrain: TrainSpec = field(default_factory=lambda: TrainSpec(steps=800, batch_size=32, lr=2e-3))
    finetune: TrainSpec = field(default_factory=lambda: TrainSpec(steps=800, batch_size=32, lr=2e-3))
    pretrain_speed_weight: float = 0.0
    pretrain_plan_weight: float = 0.0
    pretrain_hidden: list[str] = field(default_factory=list)
    finetune_latent_weight: float = 0.0
    finetune_pretrained_lr_scale: float = 1.0
    distill: TrainSpec = field(default_factory=lambda: TrainSpec(steps=800, batch_size=32, lr=1e-3))
    distill_fraction: float = 1.0
    student: dict[str, Any] = field(default_factory=dict)
    latency_steps: int = 50  # batch-1 steps timed per path in the student's evaluation

    def closed_loop(self, fraction: float) -> bool:
        return self.closed_loop_fractions is None or fraction in self.closed_loop_fractions

    def __post_init__(self) -> None:
        fr = [float(f) for f in self.label_fractions]
        if not fr or len(set(fr)) != len(fr) or not all(0 < f <= 1 for f in fr):
            raise ValueError(
                f"LatentSpec.label_fractions: expected distinct values in (0, 1], got {self.label_fractions}"
            )
        self.label_fractions = fr
        if self.unlabeled not in ("strip", "collect"):
            raise ValueError(f"LatentSpec.unlabeled: expected 'strip' or 'collect', got {self.unlabeled!r}")
        if self.closed_loop_fractions is not None:
            self.closed_loop_fractions = [float(f) for f in self.closed_loop_fractions]
            bad = [f for f in self.closed_loop_fractions if f not in fr]
            if bad:
                raise ValueError(
                    f"LatentSpec.closed_loop_fractions: expected values from label_fractions {fr}, got {bad}"
                )
        if self.distill_fraction not in fr:
            raise ValueError(
                f"LatentSpec.distill_fraction: expected one of label_fractions {fr}, got {self.distill_fraction}"
            )
        check_positive("LatentSpec.unlabeled_episodes", self.unlabeled_episodes)
        check_positive("LatentSpec.pretrain_speed_weight", self.pretrain_speed_weight, allow_zero=True)
        check_positive("LatentSpec.pretrain_plan_weight", self.pretrain_plan_weight, allow_zero=True)
        from mot.action_expert import HIDEABLE_TOKENS

        self.pretrain_hidden = check_name_list(
            "LatentSpec.pretrain_hidden", self.pretrain_hidden, HIDEABLE_TOKENS
        )
        check_positive("LatentSpec.finetune_latent_weight", self.finetune_latent_weight, allow_zero=True)
        check_positive("LatentSpec.finetune_pretrained_lr_scale", self.finetune_pretrained_lr_scale)
        check_positive("LatentSpec.latency_steps", self.latency_steps)


@dataclass
class StudyConfig:
    preset: str = "tiny"
    data: DataSpec = field(default_factory=DataSpec)
    pretrain_ue_steps: int = 200  # 0: a randomly initialised UE (the paper's "w/o pretrained UE")
    ae: TrainSpec = field(default_factory=lambda: TrainSpec(steps=800, lr=2e-3))
    refiner: TrainSpec = field(default_factory=lambda: TrainSpec(steps=1600, lr=1e-3))
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
    dart: DartSpec = field(default_factory=DartSpec)
    dagger: DaggerSpec = field(default_factory=DaggerSpec)
    refiner_dagger: RefinerDaggerSpec = field(default_factory=RefinerDaggerSpec)
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    augment: dict[str, float] = field(default_factory=dict)  # training.augment.EgoAugmentConfig fields
    # The AE's trajectory loss per sample x (1 + keyframe_weight x |the label's speed change|), training.keyframe
    keyframe_weight: float = 0.0
    # The same two options for the refiner stage (the diffusion head reads the ego state through its
    # AdaLN conditioning; training.stages.refiner); off by default
    refiner_augment: dict[str, float] = field(default_factory=dict)
    refiner_keyframe_weight: float = 0.0
    # driving.expert.ExpertConfig fields of the expert that drives the demonstrations, labels every
    # state (DAgger too) and runs as the `expert` baseline; e.g. {"other_routes": "any"}
    expert: dict[str, Any] = field(default_factory=dict)
    latent: LatentSpec | None = None  # set: the latent-action study instead of the head comparison

    def __post_init__(self) -> None:
        self.heads = [h if isinstance(h, HeadSpec) else build_config(HeadSpec, h) for h in self.heads]
        keys = [h.key for h in self.heads]
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"StudyConfig.heads: expected distinct head labels, got {keys}")
        if not any(h.name == "mlp" and h.key == "mlp" for h in self.heads):
            raise ValueError(
                "StudyConfig.heads: expected a head named 'mlp' under its own name (the AE stage trains "
                "it and refiners wrap it as 'mlp'), got "
                f"{[(h.name, h.key) for h in self.heads]} as (name, label) pairs"
            )
        for name in ("training_seeds", "sampling_seeds"):
            seeds = list(getattr(self, name))
            if not seeds or len(set(seeds)) != len(seeds):
                raise ValueError(f"StudyConfig.{name}: expected distinct seeds, got {seeds}")
        bad = sorted(set(self.baselines) - set(BASELINES))
        if bad:
            raise ValueError(f"StudyConfig.baselines: expected names from {list(BASELINES)}, got {bad}")
        check_positive("StudyConfig.pretrain_ue_steps", self.pretrain_ue_steps, allow_zero=True)
        for spec in (self.dagger, self.refiner_dagger):
            for name in ("scenarios", "extra_scenarios"):
                bad = [n for n in getattr(spec, name) or [] if n not in self.data.scenarios]
                if bad:
                    raise ValueError(
                        f"{type(spec).__name__}.{name}: expected names from the study's scenarios "
                        f"{list(self.data.scenarios)}, got {bad}"
                    )

        from training.augment import as_augment_config

        as_augment_config(self.augment, field="StudyConfig.augment")  # validates the names and values
        as_augment_config(self.refiner_augment, field="StudyConfig.refiner_augment")
        self.expert_config()  # validates the names and values
        check_positive("StudyConfig.bootstrap_samples", self.bootstrap_samples)
        check_positive("StudyConfig.keyframe_weight", self.keyframe_weight, allow_zero=True)
        check_positive("StudyConfig.refiner_keyframe_weight", self.refiner_keyframe_weight, allow_zero=True)
        if self.latent is not None:
            self._check_latent_study()
        if self.refiner_dagger.rounds and all(h.key == "mlp" for h in self.heads):
            raise ValueError(
                "StudyConfig.refiner_dagger.rounds: expected 0 in a study without a refining head (heads "
                f"{[h.key for h in self.heads]}), got {self.refiner_dagger.rounds}"
            )

    def _check_latent_study(self) -> None:
        """A latent study (`studies.latent`) runs its own stages: refuse what only the head comparison
        reads, instead of ignoring it. Its one head, the MLP head, is the fine-tuned AEs' head."""
        if [h.name for h in self.heads] != ["mlp"]:
            raise ValueError(
                "StudyConfig.heads: a latent study trains the AE's MLP head only: expected one head "
                f"named 'mlp', got {[h.name for h in self.heads]}"
            )
        unread = {
            "dagger.rounds": (self.dagger.rounds, 0),
            "refiner_dagger.rounds": (self.refiner_dagger.rounds, 0),
            "validation.every_n_steps": (self.validation.every_n_steps, 0),
            "augment": (self.augment, {}),
            "keyframe_weight": (self.keyframe_weight, 0.0),
            "refiner_augment": (self.refiner_augment, {}),
            "refiner_keyframe_weight": (self.refiner_keyframe_weight, 0.0),
            "expert": (self.expert, {}),
            "refiner": (self.refiner, _default("refiner")),
        }
        for name, (got, default) in unread.items():
            if got != default:
                raise ValueError(
                    f"StudyConfig.{name}: a latent study does not run this stage (its training is "
                    f"`latent.*`): expected the default {default}, got {got}"
                )

    def expert_config(self):
        """The study's `driving.expert.ExpertConfig`."""
        from driving.expert import ExpertConfig

        return build_config(ExpertConfig, self.expert)

    def head(self, key: str) -> HeadSpec:
        for h in self.heads:
            if h.key == key:
                return h
        raise ValueError(f"head: expected one of {[h.key for h in self.heads]}, got {key!r}")

    def is_stochastic(self, key: str) -> bool:
        """Does the head's plan depend on the sampling seed (`PlanningHead.is_stochastic`)?"""
        from heads import head_class

        return bool(head_class(self.head(key).name).is_stochastic)

    def head_sampling_seeds(self, key: str) -> list[int]:
        """The sampling seeds a head is evaluated under: all of them for a stochastic head, the first
        for a deterministic one (its plan ignores the generator, so more runs would be copies of it)."""
        return list(self.sampling_seeds) if self.is_stochastic(key) else list(self.sampling_seeds[:1])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: Registry[StudyConfig] = Registry("study profile")


def _default(name: str) -> Any:
    """The default value of the `StudyConfig` field `name`."""
    f = StudyConfig.__dataclass_fields__[name]
    return f.default_factory() if callable(f.default_factory) else f.default


# Ego-input dropout and speed noise while the AE trains (`training.augment`): against the inertia problem
# (a policy that copies its own speed stands still where the expert starts off). Measured at the demo's
# size, 3 training seeds, the same 36 test episodes: MLP head 58.3 -> 71.9 DS, every seed better
# (+7.5 / +14.9 / +18.4), no timeouts left (12 of 36 before); docs/on-policy-study.md.
EGO_DROPOUT = {"history_dropout": 0.5, "state_dropout": 0.5, "speed_noise_std": 0.5}


@PROFILES.register("demo")
def _demo() -> StudyConfig:
    """The main job: 16 min on an idle 2-core Intel VM, fresh clone, 2026-12-03 (3 training seeds x 2
    sampling seeds, 4 scenarios; BENCHMARKS.md). Behaviour cloning with ego dropout, then one DAgger round: each seed's
    MLP policy drives 4 DART-noisy rollouts per scenario and 4 more at the intersection, the expert
    labels every state it reaches, the AE fine-tunes on everything; then the refiner, 800 steps (half
    the default, for the 20-minute budget). The round, measured on the demo's own data (3 training
    seeds, the same 36 test episodes, docs/on-policy-study.md): MLP head 62.4 -> 82.5 DS, diffusion
    head 79.5 -> 83.1 with 1,600 refiner steps; 800 steps: diffusion 81.7 DS, refined / prior L2 0.90
    (1,600: 83.1, 0.83), about 5 minutes of wall time less."""
    return StudyConfig(
        augment=dict(EGO_DROPOUT),
        dagger=DaggerSpec(
            rounds=1,
            episodes=4,
            extra_scenarios=["intersection"],
            extra_episodes=4,
            noise=DartSpec(acceleration_std=0.5, lateral_accel_std=0.5),
        ),
        refiner=TrainSpec(steps=800, lr=1e-3),
    )


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
        augment=dict(EGO_DROPOUT),
    )


@PROFILES.register("reference")
def _reference() -> StudyConfig:
    """The headline study (docs/reference-study.md): under an hour on 2 cores (46.3 min on an idle
    2-core Intel VM, 2026-12-02). Twice the demo's demonstrations, 1.5x its AE steps, turn signals in
    the BEV (other cars blink before they turn, the cue the expert's route knowledge stands for), ego
    dropout and keyframe weighting (the samples where the expert changes speed count more), two
    DAgger rounds with DART noise on the rollouts (4 per scenario and round, 12 more at the
    intersection, where the behaviour-cloned policies fail most), then one DAgger round of the
    diffusion policy's own for its refiner (the same rollout counts), 2 training x 2 sampling seeds,
    10 test episodes per scenario (40 per run)."""
    rollouts = dict(extra_scenarios=["intersection"], extra_episodes=12)
    noise = DartSpec(acceleration_std=0.5, lateral_accel_std=0.5)
    return StudyConfig(
        data=DataSpec(train_episodes=24, val_episodes=3, test_episodes=10, turn_signals=True),
        ae=TrainSpec(steps=1200, lr=2e-3),
        training_seeds=[0, 1],
        sampling_seeds=[0, 1],
        eval=EvalSpec(episodes=10),
        augment=dict(EGO_DROPOUT),
        keyframe_weight=2.0,
        dagger=DaggerSpec(rounds=2, episodes=4, noise=noise, **rollouts),
        refiner_dagger=RefinerDaggerSpec(rounds=1, episodes=4, noise=noise, **rollouts),
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


@PROFILES.register("latent")
def _latent() -> StudyConfig:
    """The latent-action study (docs/latent.md): 4 scenarios, 10 train episodes each (labels kept for
    5/10/25/100 % of them, all of them unlabeled for the LAM and the pretraining), 3 training seeds,
    pretrained vs from-scratch AE (closed loop at 10 % and 100 %), then the student distilled from
    the pretrained teacher at 100 % (a 64-wide decoder, 1,500 steps: with 500 it drove at 0.92x its
    teacher's DS, with 1,500 at 1.21x, 3 seeds; docs/latent.md). Sized for a 2-core machine."""
    return StudyConfig(
        data=DataSpec(train_episodes=10, val_episodes=2, test_episodes=3),
        pretrain_ue_steps=200,
        heads=[HeadSpec("mlp")],
        sampling_seeds=[0],
        eval=EvalSpec(episodes=2),
        latent=LatentSpec(
            unlabeled="strip",
            closed_loop_fractions=[0.1, 1.0],
            lam={"pool": 2, "downsamples": 2, "width": 48, "recon_scales": [1, 2, 4, 8]},
            lam_train=TrainSpec(steps=1000, batch_size=32, lr=2e-3),
            pretrain=TrainSpec(steps=500, batch_size=32, lr=2e-3),
            finetune=TrainSpec(steps=400, batch_size=32, lr=2e-3),
            distill=TrainSpec(steps=1500, batch_size=32, lr=1e-3),
            # 64 wide: the decoder that meets the latency target (0.19x the `small` AE step, BENCHMARKS)
            student={"dim": 64},
        ),
    )


@PROFILES.register("latent_smoke")
def _latent_smoke() -> StudyConfig:
    """The tests: every task of the latent study on one short scenario, in seconds of training."""
    small = dict(batch_size=8, warmup_steps=2)
    return StudyConfig(
        data=DataSpec(
            scenarios=["highway"], train_episodes=2, val_episodes=1, test_episodes=1, duration_s=8.0
        ),
        pretrain_ue_steps=0,
        heads=[HeadSpec("mlp", kwargs={"hidden_dim": 32})],  # not the default: the fine-tunings use it
        training_seeds=[0],
        sampling_seeds=[0],
        eval=EvalSpec(episodes=1),
        baselines=["constant_velocity"],
        bootstrap_samples=200,
        latent=LatentSpec(
            unlabeled_episodes=2,
            label_fractions=[0.5, 1.0],
            lam={"width": 16, "depth": 1, "num_heads": 2, "pool": 2, "vq": {"code_dim": 8}},
            lam_train=TrainSpec(steps=4, lr=1e-3, **small),
            pretrain=TrainSpec(steps=3, lr=1e-3, **small),
            finetune=TrainSpec(steps=3, lr=1e-3, **small),
            distill=TrainSpec(steps=3, lr=1e-3, **small),
            student={"dim": 32, "depth": 1, "num_heads": 2, "bev_channels": [8, 16, 16]},
            latency_steps=3,
        ),
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
