"""Statistics of a study (`summary.json`): per head and metric over its runs, the split of the spread
into training seeds and sampling seeds, per-scenario driving scores, head-vs-MLP comparisons, robust
aggregates of episode scores (`robust`: IQM, P(X > Y), performance profiles) and variance components
with the design's detectable difference (`power`).

Runs are sorted before anything is computed and the bootstrap is seeded, so the summary depends only
on the set of finished runs, not on the order they finished in.
"""

from __future__ import annotations

import math

import numpy as np

from studies.config import StudyConfig
from studies.power import components, difference_table, difference_test
from studies.resampling import ScoreTable, score_table
from studies.robust import robust_summary
from studies.stats import compare, describe, seed_spread

# (key in the summary, where it lives in a run record, higher is better)
CLOSED_LOOP = {
    "ds": ("closed_loop", "ds", True),
    "sr": ("closed_loop", "sr", True),
    "route_completion": ("closed_loop", "route_completion", True),
    "collision_rate": ("closed_loop", "collision_rate", False),
}
OPEN_LOOP = {
    "l2_1s": ("open_loop", "l2_1s_stp3", False),
    "l2_2s": ("open_loop", "l2_2s_stp3", False),
    "l2_3s": ("open_loop", "l2_3s_stp3", False),
    "l2_avg": ("open_loop", "l2_avg_stp3", False),
    "l2_avg_uniad": ("open_loop", "l2_avg_uniad", False),
    "collision_avg": ("open_loop", "collision_avg_stp3", False),
    "acc_joint": ("open_loop", "acc_joint", True),
    "acc_lateral": ("open_loop", "acc_lateral", True),
    "acc_longitudinal": ("open_loop", "acc_longitudinal", True),
}
# Refining heads only: prior vs refined on the same test data (training.refine_eval.flat_summary).
REFINEMENT = {
    "refine_ratio": ("refinement", "ratio", False),
    "refine_route_ratio": ("refinement", "route_ratio", False),
    "prior_l2_avg": ("refinement", "prior_l2_avg", False),
    "refined_l2_avg": ("refinement", "refined_l2_avg", False),
    "prior_route_l1": ("refinement", "prior_route_l1", False),
    "refined_route_l1": ("refinement", "refined_route_l1", False),
    **{f"steps{n}_l2_avg": ("refinement", f"steps{n}_k1_l2_avg", False) for n in (1, 2, 5)},
    "k8_selected_l2_avg": ("refinement", "steps2_k8_selected_l2_avg", False),
    "k8_oracle_l2_avg": ("refinement", "steps2_k8_oracle_l2_avg", False),
    **{
        f"no_{w}_l2_avg": ("refinement", f"no_{w}_l2_avg", False) for w in ("bypass", "decision", "reasoning")
    },
}
METRICS = {**CLOSED_LOOP, **OPEN_LOOP, **REFINEMENT}


def _value(run: dict, where: tuple) -> float | None:
    section, key, _ = where
    value = run.get(section, {}).get(key)
    return None if value is None else float(value)


def _clean(obj):
    """JSON has no NaN: undefined statistics (e.g. std of one run) become None."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def planned_runs(runs: list[dict], config: StudyConfig) -> list[dict]:
    """The runs the study's plan asks for, sorted: a head's runs under its own sampling seeds (one for
    a deterministic head, `StudyConfig.head_sampling_seeds`) and the baselines. A folder from before
    deterministic heads ran once also holds copies of them under the other sampling seeds; those are
    left out, so they do not shrink the spread as if they were independent runs."""
    keys = {h.key: set(config.head_sampling_seeds(h.key)) for h in config.heads}
    kept = [
        r
        for r in runs
        if r["head"] in config.baselines or (r["head"] in keys and r["sampling_seed"] in keys[r["head"]])
    ]
    return sorted(kept, key=lambda r: r["run_id"])


def summarize_study(runs: list[dict], config: StudyConfig) -> dict:
    runs = planned_runs(runs, config)
    order = [h.key for h in config.heads] + list(config.baselines)
    by_head = {key: [r for r in runs if r["head"] == key] for key in order}
    boot = config.bootstrap_samples
    stochastic = {h.key: config.is_stochastic(h.key) for h in config.heads}
    heads: dict[str, dict] = {}
    for key, rs in by_head.items():
        entry: dict = {
            "kind": "baseline" if key in config.baselines else "head",
            "n_runs": len(rs),
            "runs": [r["run_id"] for r in rs],
            "metrics": {},
            "seed_spread": {},
            "per_scenario": {},
        }
        for name, where in METRICS.items():
            pairs = [(r, v) for r in rs if (v := _value(r, where)) is not None]
            if not pairs:
                continue
            values = [v for _, v in pairs]
            # Runs of one training seed share a trained model: the CI resamples training seeds.
            clusters = [r["training_seed"] for r, _ in pairs] if entry["kind"] == "head" else None
            entry["metrics"][name] = describe(
                values, higher_is_better=where[2], n_boot=boot, seed=0, clusters=clusters
            )
            if entry["kind"] == "head":
                spread = seed_spread(values, [r["training_seed"] for r, _ in pairs])
                if not stochastic[key]:
                    # One run per training seed: its plan ignores the sampling seed, nothing to spread.
                    spread["within_training_std"] = 0.0
                entry["seed_spread"][name] = spread
        scenarios = sorted({s for r in rs for s in r.get("closed_loop", {}).get("per_scenario", {})})
        for scenario in scenarios:
            with_s = [r for r in rs if scenario in r["closed_loop"]["per_scenario"]]
            ds = [r["closed_loop"]["per_scenario"][scenario]["ds"] for r in with_s]
            clusters = [r["training_seed"] for r in with_s] if entry["kind"] == "head" else None
            entry["per_scenario"][scenario] = describe(ds, n_boot=boot, seed=0, clusters=clusters)
        if entry["kind"] == "head" and rs:
            entry["by_training_seed"] = {
                str(seed): describe(
                    [r["closed_loop"]["ds"] for r in rs if r["training_seed"] == seed], n_boot=boot, seed=0
                )
                for seed in config.training_seeds
                if any(r["training_seed"] == seed for r in rs)
            }
        heads[key] = entry

    comparisons = {}
    base = by_head.get("mlp", [])
    for h in config.heads:
        if h.key == "mlp" or not by_head[h.key] or not base:
            continue
        comp = {}
        for name in ("ds", "sr", "route_completion", "l2_avg", "collision_avg"):
            pa = [
                (r["training_seed"], v) for r in by_head[h.key] if (v := _value(r, METRICS[name])) is not None
            ]
            pb = [(r["training_seed"], v) for r in base if (v := _value(r, METRICS[name])) is not None]
            if pa and pb:
                comp[name] = compare(
                    [v for _, v in pa],
                    [v for _, v in pb],
                    n_boot=boot,
                    seed=0,
                    clusters_a=[t for t, _ in pa],
                    clusters_b=[t for t, _ in pb],
                )
        comparisons[f"{h.key}_vs_mlp"] = comp

    expected = len(config.training_seeds) * sum(
        len(config.head_sampling_seeds(h.key)) for h in config.heads
    ) + len(config.baselines)
    tables = score_tables(runs, config)
    summary = {
        "config": {
            "preset": config.preset,
            "heads": [h.key for h in config.heads],
            "baselines": list(config.baselines),
            "training_seeds": list(config.training_seeds),
            "sampling_seeds": list(config.sampling_seeds),
            "head_sampling_seeds": {h.key: config.head_sampling_seeds(h.key) for h in config.heads},
            "scenarios": list(config.data.scenarios),
            "episodes_per_scenario": config.eval.episodes,
        },
        "complete": len(runs) == expected,
        "n_runs": len(runs),
        "expected_runs": expected,
        "heads": heads,
        "comparisons": comparisons,
        "headline": {
            key: {
                f"{m}_{stat}": heads[key]["metrics"].get(m, {}).get(stat)
                for m in ("ds", "sr")
                for stat in ("mean", "std", "best")
            }
            for key in order
            if heads[key]["metrics"]
        },
        "robust": robust_section(tables, boot),
        "power": power_section(tables, config),
    }
    return _clean(summary)


# -- robust aggregates and power (studies.robust, studies.power) --------------------------------------


def score_tables(runs: list[dict], config: StudyConfig) -> dict[str, ScoreTable]:
    """Closed-loop episode scores per head (runs in config order) as (T, S, E) tables per scenario;
    a baseline is one run (T = S = 1), a deterministic head one run per training seed (S = 1). Heads
    without runs are left out."""
    tables = {}
    for key in [h.key for h in config.heads] + list(config.baselines):
        rs = [r for r in runs if r["head"] == key and r.get("closed_loop", {}).get("episode_scores")]
        if not rs:
            continue
        scores = {}
        for r in rs:
            for name, value in r["closed_loop"]["episode_scores"].items():
                scenario, episode = name.rsplit(":", 1)
                scores[(r["training_seed"], r["sampling_seed"], scenario, int(episode))] = value
        baseline = key in config.baselines
        tables[key] = score_table(
            scores,
            training_seeds=[None] if baseline else list(config.training_seeds),
            sampling_seeds=[None] if baseline else config.head_sampling_seeds(key),
        )
    return tables


def robust_section(tables: dict[str, ScoreTable], n_boot: int) -> dict:
    """IQM / mean of episode scores, P(X > Y) for every pair, performance profiles (with CIs)."""
    return robust_summary(tables, n_boot=n_boot, seed=0) if tables else {}


def power_section(tables: dict[str, ScoreTable], config: StudyConfig) -> dict:
    """Variance components of each head and of each head-minus-MLP difference, the design's own test
    of that difference and the smallest difference it detects (80% power, alpha 0.05)."""
    out: dict = {"heads": {}, "comparisons": {}}
    complete = {
        k: t
        for k, t in tables.items()
        if k not in config.baselines and not any(np.isnan(a).any() for a in t.strata.values())
    }
    for key, table in complete.items():
        out["heads"][key] = components(table).to_dict()
    if "mlp" in complete:
        for key, table in complete.items():
            if key == "mlp":
                continue
            diff = difference_table(table, complete["mlp"])
            t, s = diff.shape
            out["comparisons"][f"{key}_vs_mlp"] = {
                "components": components(diff).to_dict(),
                "design": {
                    "training_seeds": t,
                    "sampling_seeds": s,
                    "episodes_per_scenario": config.eval.episodes,
                },
                "test": difference_test(diff),
            }
    return out


def headline_table(summary: dict) -> list[dict]:
    """Rows of the paper-table-9 style headline: head, DS mean/std/best, SR mean/std/best, n."""
    rows = []
    for key, entry in summary["heads"].items():
        m = entry["metrics"]
        if "ds" not in m:
            continue
        rows.append(
            {
                "head": key,
                "kind": entry["kind"],
                "n": entry["n_runs"],
                "ds_mean": m["ds"]["mean"],
                "ds_std": m["ds"].get("std"),
                "ds_best": m["ds"]["best"],
                # The CI of the mean DS resamples training seeds and episodes (studies.resampling).
                "ds_ci": _mean_ci(summary, key, m["ds"]),
                "sr_mean": m["sr"]["mean"],
                "sr_std": m["sr"].get("std"),
                "sr_best": m["sr"]["best"],
                "l2_avg": m.get("l2_avg", {}).get("mean"),
            }
        )
    return rows


def _mean_ci(summary: dict, key: str, ds: dict) -> tuple:
    hier = summary.get("robust", {}).get("mean", {}).get(key)
    return (hier["ci_low"], hier["ci_high"]) if hier else (ds["ci_low"], ds["ci_high"])
