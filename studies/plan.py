"""`automot study plan`: how many training seeds x sampling seeds x episodes a comparison needs.

    automot study plan --from runs/demo --detect 2.0 [--power 0.8] [--alpha 0.05] [--workers 2] [--json]

From a finished (pilot) study: the variance components of every head-minus-MLP difference
(`studies.power`), the power of each candidate design to detect a DS difference of `--detect`, and the
wall time of each design on this machine, estimated from the pilot's own task durations (training
tasks from their status files, evaluation from the runs' and episodes' wall times). The cheapest
designs that reach the power for every comparison are printed first.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from automot.config import build_config
from automot.progress import format_duration
from studies.config import StudyConfig
from studies.power import Components, design_variance, power

DEFAULT_GRID = {"training_seeds": range(2, 21), "sampling_seeds": range(1, 9), "episodes": range(1, 101)}


@dataclass(frozen=True)
class CostModel:
    """Seconds of one worker per task, measured in the pilot (None: not recorded)."""

    fixed_s: float | None  # collection + UE pretraining, independent of the design
    ae_s: float | None  # one AE + MLP training per training seed
    refine_s: dict[str, float | None]  # one refiner training per training seed, per head
    open_loop_s: dict[str, float]  # per evaluation run, per head
    episode_s: dict[str, float]  # per closed-loop episode, per head or baseline
    scenarios: int
    deterministic: tuple[str, ...] = ()  # heads run once per training seed (not per sampling seed)

    def wall_s(self, t: int, s: int, e: int, workers: int) -> float | None:
        if self.fixed_s is None or self.ae_s is None or any(v is None for v in self.refine_s.values()):
            return None
        heads = list(self.open_loop_s)
        run = {h: self.open_loop_s[h] + self.scenarios * e * self.episode_s[h] for h in heads}
        baselines = [k for k in self.episode_s if k not in self.open_loop_s]
        refine = sum(self.refine_s.values())
        total = (
            self.fixed_s
            + t * (self.ae_s + refine)
            + t * sum(v * (1 if h in self.deterministic else s) for h, v in run.items())
            + sum(self.scenarios * e * self.episode_s[b] for b in baselines)
        )
        critical = self.fixed_s + self.ae_s + max(self.refine_s.values(), default=0.0) + max(run.values())
        return max(critical, total / workers)


def cost_model(study: Path, config: dict, runs: list[dict]) -> CostModel:
    from automot.io import read_jsonl
    from studies.progress import STATUS_DIR

    durations: dict[str, list[float]] = {}
    folder = study.joinpath(*STATUS_DIR)
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            st = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if st.get("state") == "done" and st.get("elapsed_s") is not None:
            kind = st["kind"] if st["kind"] != "refine" else "refine:" + st["task"].rsplit(":", 1)[1]
            durations.setdefault(kind, []).append(float(st["elapsed_s"]))

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    collect = sum(durations["collect"]) if durations.get("collect") else None
    ue = 0.0 if config.get("pretrain_ue_steps", 0) == 0 else mean(durations.get("ue", []))
    fixed = None if collect is None or ue is None else collect + ue
    heads = [h.get("label") or h["name"] for h in config["heads"]]
    open_loop, episode = {}, {}
    for key in heads + list(config.get("baselines", [])):
        walls, eps, opens = [], [], []
        for r in runs:
            if r["head"] != key:
                continue
            records = read_jsonl(study / "runs" / f"{r['run_id']}.episodes.jsonl")
            ep = [float(x.get("wall_time_s", 0.0)) for x in records]
            eps += ep
            walls.append(float(r.get("wall_s", 0.0)))
            opens.append(max(0.0, float(r.get("wall_s", 0.0)) - sum(ep)))
        if eps:
            episode[key] = sum(eps) / len(eps)
            if key in heads:
                open_loop[key] = sum(opens) / len(opens)
    refine = {h: mean(durations.get(f"refine:{h}", [])) for h in heads if h != "mlp"}
    study_config = build_config(StudyConfig, config)
    deterministic = tuple(h.key for h in study_config.heads if not study_config.is_stochastic(h.key))
    return CostModel(
        fixed,
        mean(durations.get("ae", [])),
        refine,
        open_loop,
        episode,
        len(config["data"]["scenarios"]),
        deterministic,
    )


def pilot_components(study: Path) -> tuple[dict, dict[str, Components], CostModel, list[str]]:
    """The pilot's config, the components of each comparison, its cost model and notes."""
    from automot.io import read_jsonl
    from studies.config import StudyConfig, build_config
    from studies.summary import power_section, score_tables

    study = Path(study)
    if not (study / "study.json").exists():
        raise ValueError(f"--from: expected a study folder with study.json, got {study}")
    config_dict = json.loads((study / "study.json").read_text())
    config = build_config(StudyConfig, config_dict)
    runs = read_jsonl(study / "runs.jsonl")
    notes = []
    section = power_section(score_tables(runs, config), config)
    comps = {name: _components(c["components"]) for name, c in section["comparisons"].items()}
    if not comps:
        if not section["heads"]:
            raise ValueError(
                f"--from {study}: expected finished head runs with every episode (a complete pilot), got none"
            )
        key, c = next(iter(section["heads"].items()))
        comps[f"another head vs {key}"] = _components(c).scaled(2.0)
        notes.append(
            f"one head in the pilot: a comparison is assumed to be two independent heads like {key!r}"
        )
    for name, c in comps.items():
        missing = [k for k in ("training", "sampling", "episode") if k not in c.identified]
        if missing:
            notes.append(
                f"{name}: the pilot cannot separate {', '.join(missing)} variance (one unit at that level); "
                "it stays inside the level above (or is taken as 0 for episodes)"
            )
    if len(config.training_seeds) < 3:
        notes.append(
            f"the pilot has {len(config.training_seeds)} training seeds: the training-seed variance is a rough estimate"
        )
    return config_dict, comps, cost_model(study, config_dict, runs), notes


def _components(d: dict) -> Components:
    return Components(
        d["training"], d["sampling"], d["episode"], d["residual"], d["scenarios"], tuple(d["identified"])
    )


def plan_designs(
    comps: dict[str, Components],
    cost: CostModel | None,
    *,
    detect: float,
    target: float = 0.8,
    alpha: float = 0.05,
    workers: int = 2,
    grid: dict = DEFAULT_GRID,
) -> list[dict]:
    """Every design of the grid reaching `target` power for all comparisons, cheapest first (by
    estimated wall time, then by the number of runs x episodes)."""

    def powers(t: int, s: int, e: int) -> dict[str, float]:
        return {n: power(detect, *design_variance(c, t, s, e), alpha) for n, c in comps.items()}

    rows = []
    episodes = sorted(grid["episodes"])
    for t in grid["training_seeds"]:
        for s in grid["sampling_seeds"]:
            if min(powers(t, s, episodes[-1]).values()) < target:
                continue
            lo, hi = 0, len(episodes) - 1  # power grows with episodes: the fewest that reach the target
            while lo < hi:
                mid = (lo + hi) // 2
                if min(powers(t, s, episodes[mid]).values()) >= target:
                    hi = mid
                else:
                    lo = mid + 1
            e = episodes[lo]
            rows.append(
                {
                    "training_seeds": t,
                    "sampling_seeds": s,
                    "episodes_per_scenario": e,
                    "power": powers(t, s, e),
                    "wall_s": cost.wall_s(t, s, e, workers) if cost is not None else None,
                }
            )
    return sorted(
        rows,
        key=lambda r: (
            math.inf if r["wall_s"] is None else r["wall_s"],
            r["training_seeds"] * r["sampling_seeds"] * r["episodes_per_scenario"],
        ),
    )


def add_plan_parser(subparsers) -> None:
    p = subparsers.add_parser("plan", help="seeds x episodes a comparison needs, from a finished pilot study")
    p.add_argument("--from", dest="from_dir", required=True, help="a finished (pilot) study folder")
    p.add_argument("--detect", type=float, required=True, help="the DS difference to detect (e.g. 2.0)")
    p.add_argument("--power", type=float, default=0.8, help="the probability of detecting it (default 0.8)")
    p.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    p.add_argument(
        "--workers", type=int, default=2, help="worker processes of the planned study (for wall time)"
    )
    p.add_argument("--top", type=int, default=8, help="designs to list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    if not args.detect > 0:
        raise ValueError(f"--detect: expected a DS difference > 0, got {args.detect}")
    if not 0 < args.power < 1 or not 0 < args.alpha < 1:
        raise ValueError(f"--power / --alpha: expected values in (0, 1), got {args.power} / {args.alpha}")
    if args.workers < 1:
        raise ValueError(f"--workers: expected >= 1, got {args.workers}")
    config, comps, cost, notes = pilot_components(Path(args.from_dir))
    rows = plan_designs(
        comps, cost, detect=args.detect, target=args.power, alpha=args.alpha, workers=args.workers
    )
    pilot = (len(config["training_seeds"]), len(config["sampling_seeds"]), config["eval"]["episodes"])
    pilot_power = (
        {n: power(args.detect, *design_variance(c, *pilot), args.alpha) for n, c in comps.items()}
        if pilot[0] >= 2
        else {}
    )
    if args.json:
        print(
            json.dumps(
                {
                    "detect": args.detect,
                    "pilot": {"design": pilot, "power": pilot_power},
                    "components": {n: c.to_dict() for n, c in comps.items()},
                    "cost": dataclasses.asdict(cost),
                    "designs": rows[: args.top],
                    "notes": notes,
                },
                sort_keys=True,
            )
        )
        return 0
    print(
        f"pilot {args.from_dir}: {pilot[0]} training x {pilot[1]} sampling seeds x {pilot[2]} episodes per scenario"
    )
    for name, c in comps.items():
        sd = ", ".join(
            f"{k} {getattr(c, k) ** 0.5:.2f}" for k in ("training", "sampling", "episode", "residual")
        )
        print(
            f"  {name}: sd of the difference by level: {sd}; pilot power for {args.detect:g}: "
            f"{pilot_power.get(name, float('nan')):.2f}"
        )
    for note in notes:
        print(f"  note: {note}")
    print("  measured in the pilot (seconds of one worker): " + describe_cost(cost))
    if not rows:
        print(
            f"no design in the grid (up to {max(DEFAULT_GRID['training_seeds'])} training x "
            f"{max(DEFAULT_GRID['sampling_seeds'])} sampling seeds x {max(DEFAULT_GRID['episodes'])} episodes) "
            f"detects {args.detect:g} with power {args.power:g}"
        )
        return 0
    print(
        f"\ndesigns that detect a DS difference of {args.detect:g} with power >= {args.power:g} (alpha {args.alpha:g}), "
        f"cheapest first (wall time on {args.workers} workers, from the pilot's task times):"
    )
    print(
        f"  {'training':>8} {'sampling':>8} {'episodes/scenario':>17} {'runs':>5} {'power':>6} {'wall time':>10}"
    )
    for r in rows[: args.top]:
        runs = r["training_seeds"] * r["sampling_seeds"]
        print(
            f"  {r['training_seeds']:>8} {r['sampling_seeds']:>8} {r['episodes_per_scenario']:>17} {runs:>5} "
            f"{min(r['power'].values()):>6.2f} {format_duration(r['wall_s']):>10}"
        )
    if rows[0]["wall_s"] is None:
        print("  (wall time unknown: the pilot has no task timings; studies run by this version record them)")
    best = rows[0]
    print(
        f"\nautomot study --config <your study.yaml> --training-seeds {' '.join(map(str, range(best['training_seeds'])))} "
        f"--sampling-seeds {' '.join(map(str, range(best['sampling_seeds'])))} --episodes {best['episodes_per_scenario']}"
    )
    return 0


def describe_cost(cost: CostModel) -> str:
    def sec(x) -> str:
        return "?" if x is None else f"{x:.0f}"

    parts = [f"data + UE {sec(cost.fixed_s)}", f"AE {sec(cost.ae_s)} per training seed"]
    parts += [f"refiner {h} {sec(v)}" for h, v in cost.refine_s.items()]
    parts += [
        f"{h} run {cost.open_loop_s[h]:.0f} + {cost.episode_s[h]:.1f} per episode" for h in cost.open_loop_s
    ]
    return "; ".join(parts)
