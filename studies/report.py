"""The human side of a study: `report.md` (a table like the paper's table 9, the seed-spread split,
head-vs-MLP differences, robust aggregates and the detectable difference, per-scenario scores, every
run) and PNG plots (driving score per head over seeds, L2 per horizon, performance profiles, plan
overlays of the MLP and diffusion heads on the same test scenes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automot.io import write_text_atomic
from studies.config import StudyConfig
from studies.summary import headline_table

PLOTS = ("ds_by_head.png", "l2_by_horizon.png", "performance_profile.png", "trajectories.png")


def _pm(mean, std, digits=2) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _num(x, digits=2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def format_headline(summary: dict) -> str:
    """The table-9 style headline as markdown."""
    lines = [
        "| Head | runs | DS mean ± std | DS best | DS mean 95% CI | SR % mean ± std | SR best | L2 avg (m, ST-P3) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in headline_table(summary):
        name = row["head"] + (" (baseline)" if row["kind"] == "baseline" else "")
        lo, hi = row["ds_ci"]
        lines.append(
            f"| {name} | {row['n']} | {_pm(row['ds_mean'], row['ds_std'])} | {_num(row['ds_best'])} | "
            f"[{_num(lo)}, {_num(hi)}] | {_pm(row['sr_mean'], row['sr_std'], 1)} | {_num(row['sr_best'], 1)} | "
            f"{_num(row['l2_avg'], 3)} |"
        )
    return "\n".join(lines)


def write_report(study: Path, config: StudyConfig, summary: dict, runs: list[dict]) -> Path:
    plots = make_plots(study, config, summary, runs)
    heads = summary["heads"]
    single = [h.key for h in config.heads if not config.is_stochastic(h.key)]
    once = (
        f" Deterministic heads ({', '.join(single)}: the plan ignores the sampling seed) run once per training "
        "seed, under the first sampling seed."
        if single and len(config.sampling_seeds) > 1
        else ""
    )
    out = [
        f"# Variance study: {', '.join(h.key for h in config.heads)} (+ baselines)",
        "",
        f"Preset `{config.preset}`; training seeds {config.training_seeds}; sampling seeds {config.sampling_seeds}; "
        f"scenarios {config.data.scenarios}; {config.eval.episodes} closed-loop episode(s) per scenario on test-split seeds; "
        f"{summary['n_runs']}/{summary['expected_runs']} runs finished. A run is one (head, training seed, sampling seed); "
        f"its DS is the mean route score over its episodes.{once} Baselines run once (they are deterministic and untrained).",
        "",
        "## Closed loop, as in the paper's table 9",
        "",
        format_headline(summary),
        "",
        "## Where the spread comes from",
        "",
        "DS standard deviation between training seeds (of each training seed's mean over sampling seeds) and within a "
        "training seed (the sampler's spread for one trained model; 0 for a deterministic head).",
        "",
        "| Head | between training seeds | within a training seed (sampling) |",
        "|---|---|---|",
    ]
    for key, entry in heads.items():
        spread = entry.get("seed_spread", {}).get("ds")
        if spread:
            out.append(
                f"| {key} | {_num(spread['between_training_std'])} | {_num(spread['within_training_std'])} |"
            )
    comparisons = summary.get("comparisons", {})
    if comparisons:
        out += [
            "",
            "## Difference to the MLP head",
            "",
            "Runs that share a training seed share a trained model, so they are not independent: the CI resamples "
            "training seeds (cluster bootstrap) and Welch's test compares the per-training-seed means.",
            "",
            "| Comparison | metric | difference | 95% CI (cluster bootstrap) | Welch t (seed means) | p |",
            "|---|---|---|---|---|---|",
        ]
        for name, comp in comparisons.items():
            for metric, c in comp.items():
                out.append(
                    f"| {name} | {metric} | {_num(c['diff'], 3)} | [{_num(c['ci_low'], 3)}, {_num(c['ci_high'], 3)}] | "
                    f"{_num(c['welch_t'])} | {_num(c['welch_p'], 3)} |"
                )
    out += ["", *format_robust(summary), "", *format_power(summary)]
    scenarios = list(config.data.scenarios)
    out += [
        "",
        "## Driving score per scenario (mean ± std over runs)",
        "",
        "| Head | " + " | ".join(scenarios) + " |",
        "|---|" + "---|" * len(scenarios),
    ]
    for key, entry in heads.items():
        cells = [
            _pm(entry["per_scenario"].get(s, {}).get("mean"), entry["per_scenario"].get(s, {}).get("std"), 1)
            for s in scenarios
        ]
        out.append(f"| {key} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Open loop (test-split demonstrations)",
        "",
        "| Head | L2 1s | L2 2s | L2 3s | L2 avg (ST-P3) | L2 avg (UniAD) | collision % | decision acc (joint) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in heads.items():
        m = entry["metrics"]
        if "l2_avg" not in m:
            continue
        coll = m.get("collision_avg", {}).get("mean")
        acc = m.get("acc_joint", {}).get("mean")
        out.append(
            f"| {key} | {_pm(m['l2_1s']['mean'], m['l2_1s'].get('std'), 3)} | {_pm(m['l2_2s']['mean'], m['l2_2s'].get('std'), 3)} | "
            f"{_pm(m['l2_3s']['mean'], m['l2_3s'].get('std'), 3)} | {_pm(m['l2_avg']['mean'], m['l2_avg'].get('std'), 3)} | "
            f"{_num(m['l2_avg_uniad']['mean'], 3)} | {_num(None if coll is None else 100 * coll)} | {_num(None if acc is None else 100 * acc, 1)} |"
        )
    out += refinement_section(heads)
    out += [
        "",
        "## Every run",
        "",
        "| run | head | training seed | sampling seed | DS | SR % | RC % | L2 avg | collisions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: r["run_id"]):
        cl, ol = r["closed_loop"], r.get("open_loop", {})
        out.append(
            f"| {r['run_id']} | {r['head']} | {_seed(r['training_seed'])} | {_seed(r['sampling_seed'])} | {cl['ds']:.2f} | {cl['sr']:.1f} | "
            f"{cl['route_completion']:.1f} | {_num(ol.get('l2_avg_stp3'), 3)} | {cl['infractions'].get('collision_vehicle', 0)} |"
        )
    out += [
        "",
        *format_outcomes(config, runs),
        "",
        *format_dagger(study, config),
        "",
        *format_refiner_dagger(study, config),
        "",
        *format_failures(study, config),
    ]
    out += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    path = study / "report.md"
    write_text_atomic(path, "\n".join(out) + "\n")
    return path


def refinement_section(heads: dict) -> list[str]:
    """Does the refiner refine? Prior (the AE's MLP plan) vs refined on the test split, per refining head."""
    rows = [(key, e["metrics"]) for key, e in heads.items() if "refine_ratio" in e["metrics"]]
    if not rows:
        return []

    def cell(m, name, digits=3):
        entry = m.get(name)
        return "–" if entry is None else _pm(entry["mean"], entry.get("std"), digits)

    out = [
        "",
        "## Does the refiner refine? (test split, same AE: prior = its MLP plan)",
        "",
        "Once per trained model (the run under the first sampling seed), mean ± std over training seeds. "
        "Refined / prior L2 avg (ST-P3) is the headline: below 1 the refiner improves the plan it starts from. "
        "Steps are reverse denoising steps from the default start; K8 refines 8 candidates (selected by the head's "
        "selection; oracle = the one closest to the expert, the value of sampling). Knockouts switch one "
        "Mixture-of-Attention input off in the trained network.",
        "",
        "| Head | refined / prior L2 | prior L2 | refined L2 | route L1 prior → refined | 1 step | 2 steps | 5 steps | K8 selected | K8 oracle |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in rows:
        out.append(
            f"| {key} | {cell(m, 'refine_ratio')} | {cell(m, 'prior_l2_avg')} | {cell(m, 'refined_l2_avg')} | "
            f"{cell(m, 'prior_route_l1')} → {cell(m, 'refined_route_l1')} | {cell(m, 'steps1_l2_avg')} | "
            f"{cell(m, 'steps2_l2_avg')} | {cell(m, 'steps5_l2_avg')} | {cell(m, 'k8_selected_l2_avg')} | "
            f"{cell(m, 'k8_oracle_l2_avg')} |"
        )
    out += [
        "",
        "| Head | refined L2 | no bypass | no decision latents | no reasoning tokens |",
        "|---|---|---|---|---|",
    ]
    for key, m in rows:
        out.append(
            f"| {key} | {cell(m, 'refined_l2_avg')} | {cell(m, 'no_bypass_l2_avg')} | "
            f"{cell(m, 'no_decision_l2_avg')} | {cell(m, 'no_reasoning_l2_avg')} |"
        )
    return out


def _seed(s) -> str:
    return "–" if s is None else str(s)


def make_plots(study: Path, config: StudyConfig, summary: dict, runs: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    paths = [_plot_ds(study, config, runs), _plot_l2(study, summary), _plot_profiles(study, summary)]
    overlay = _plot_trajectories(study, config)
    if overlay is not None:
        paths.append(overlay)
    return [p for p in paths if p is not None]


def _plot_ds(study: Path, config: StudyConfig, runs: list[dict]) -> Path:
    import matplotlib.pyplot as plt

    keys = [h.key for h in config.heads] + list(config.baselines)
    fig, ax = plt.subplots(figsize=(1.6 * len(keys) + 2, 4))
    cmap = plt.get_cmap("tab10")
    markers = "os^Dv<>p"
    rng = np.random.default_rng(0)
    for i, key in enumerate(keys):
        rs = [r for r in runs if r["head"] == key]
        values = [r["closed_loop"]["ds"] for r in rs]
        if len(values) >= 3:
            ax.boxplot([values], positions=[i], widths=0.5, showfliers=False, medianprops={"color": "black"})
        for r in rs:
            t, s = r["training_seed"], r["sampling_seed"]
            colour = "gray" if t is None else cmap(config.training_seeds.index(t) % 10)
            marker = "*" if s is None else markers[config.sampling_seeds.index(s) % len(markers)]
            ax.scatter(
                i + rng.uniform(-0.15, 0.15),
                r["closed_loop"]["ds"],
                color=colour,
                marker=marker,
                s=45,
                zorder=3,
            )
    ax.set_xticks(range(len(keys)), keys)
    ax.set_ylabel("driving score per run")
    ax.set_ylim(0, 105)
    ax.set_title("DS over training seeds (colour) and sampling seeds (marker)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = study / "ds_by_head.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_l2(study: Path, summary: dict) -> Path | None:
    import matplotlib.pyplot as plt

    entries = [(k, e["metrics"]) for k, e in summary["heads"].items() if "l2_1s" in e["metrics"]]
    if not entries:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    width = 0.8 / len(entries)
    for j, (key, m) in enumerate(entries):
        means = [m[f"l2_{h}s"]["mean"] for h in (1, 2, 3)]
        stds = [m[f"l2_{h}s"].get("std") or 0.0 for h in (1, 2, 3)]
        ax.bar(np.arange(3) + j * width, means, width, yerr=stds, capsize=3, label=key)
    ax.set_xticks(np.arange(3) + width * (len(entries) - 1) / 2, ["1 s", "2 s", "3 s"])
    ax.set_ylabel("L2 (m, ST-P3 protocol)")
    ax.set_title("Open-loop L2 per horizon (mean ± std over runs)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = study / "l2_by_horizon.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_trajectories(study: Path, config: StudyConfig, scenes: int = 3, samples: int = 8) -> Path | None:
    """MLP plan vs diffusion plan and candidates on the same test scenes (first training seed)."""
    import matplotlib.pyplot as plt
    import torch

    from driving.config import BEVConfig
    from driving.dataset import DrivingDataset, collate
    from driving.viz import bev_to_rgb
    from studies.tasks import data_dir, policy_dir
    from training.policy import load_pretrained

    seed = config.training_seeds[0]
    others = [h.key for h in config.heads if h.key != "mlp"]
    folders = {k: policy_dir(study, seed, k) for k in ["mlp", *others]}
    if not all((f / "mot_config.json").exists() for f in folders.values()):
        return None
    dataset = DrivingDataset(str(data_dir(study, "test")))
    picks = np.linspace(0, len(dataset) - 1, scenes).round().astype(int).tolist()
    batch = collate([dataset[i] for i in picks])
    plans = {}
    with torch.no_grad():
        for key, folder in folders.items():
            backbone = load_pretrained(folder)
            g = torch.Generator().manual_seed(0)
            out = backbone(batch.sensors, generator=g)
            head = backbone.ae.head
            if key != "mlp" and head.supports_samples:  # only what the head declares
                cache = backbone.prefill(batch.sensors)
                ctx = backbone.ae(batch.sensors, cache, with_plan=False).context
                cand = head.candidates(ctx, samples, generator=torch.Generator().manual_seed(1))
                plans[key + " samples"] = cand.waypoint_samples.numpy()
            plans[key] = out.plan.waypoints.numpy()
    b = BEVConfig()
    fig, axes = plt.subplots(1, scenes, figsize=(4 * scenes, 4.6))
    palette = ("deepskyblue", "orange", "lime", "gold", "cyan", "red")
    colours = {"mlp": "magenta", **{k: palette[i % len(palette)] for i, k in enumerate(others)}}
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(
            bev_to_rgb(batch.sensors.bev[i].numpy()), extent=(-b.side_m, b.side_m, -b.behind_m, b.ahead_m)
        )
        gt = batch.waypoints[i].numpy()
        ax.plot(-gt[:, 1], gt[:, 0], "o-", color="white", ms=4, lw=1.5, label="expert")
        for key in (k for k in others if k + " samples" in plans):
            for k in range(samples):
                s = plans[key + " samples"][i, k]
                ax.plot(-s[:, 1], s[:, 0], "-", color=colours[key], alpha=0.25, lw=1)
        for key in ["mlp", *others]:
            p = plans[key][i]
            ax.plot(-p[:, 1], p[:, 0], "x--", color=colours[key], ms=5, label=key)
        meta = batch.meta
        ax.set_title(f"{meta['scenario'][i]} seed {meta['seed'][i]} step {meta['step'][i]}", fontsize=9)
        ax.set_xlim(-15, 15)
        ax.set_ylim(-b.behind_m, b.ahead_m)
        ax.set_xticks([])
        if i == 0:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Plans on test scenes (training seed {seed}); faint lines: {samples} diffusion candidates",
        fontsize=10,
    )
    fig.tight_layout()
    path = study / "trajectories.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- robust aggregates and power (studies.robust, studies.power) --------------------------------------

RESAMPLING_NOTE = (
    "CIs: 95% percentile bootstrap over the study's structure: training seeds drawn with all their runs, "
    "test episodes drawn within each scenario and shared by every run and head (studies/resampling.py)."
)


def format_robust(summary: dict) -> list[str]:
    """IQM and mean of episode scores per head, and P(X > Y) for every pair of heads."""
    robust = summary.get("robust") or {}
    if not robust.get("iqm"):
        return []
    out = [
        "## Robust aggregates of episode scores (Agarwal et al. 2021)",
        "",
        "IQM: the mean of the middle 50% of all episode scores of a head (rliable's definition). "
        "P(X > Y): the probability that a run of X scores higher than a run of Y on a scenario (ties count "
        "1/2), averaged over scenarios. " + RESAMPLING_NOTE,
        "",
        "| Head | IQM | IQM 95% CI | mean | mean 95% CI |",
        "|---|---|---|---|---|",
    ]
    for key, q in robust["iqm"].items():
        m = robust["mean"][key]
        out.append(
            f"| {key} | {_num(q['estimate'])} | [{_num(q['ci_low'])}, {_num(q['ci_high'])}] | "
            f"{_num(m['estimate'])} | [{_num(m['ci_low'])}, {_num(m['ci_high'])}] |"
        )
    out += ["", "| X | Y | P(X > Y) | 95% CI |", "|---|---|---|---|"]
    for p in robust.get("probability_of_improvement", {}).values():
        out.append(
            f"| {p['x']} | {p['y']} | {_num(p['estimate'], 3)} | [{_num(p['ci_low'], 3)}, {_num(p['ci_high'], 3)}] |"
        )
    return out


def format_power(summary: dict) -> list[str]:
    """Variance components and the smallest DS difference the study itself detects."""
    power = summary.get("power") or {}
    if not power.get("heads"):
        return []
    out = [
        "## Variance components and the detectable difference",
        "",
        "Method-of-moments variance components of episode DS (studies/power.py): between training seeds, "
        "between sampling seeds of one trained model, between episodes of a scenario, and what is left. "
        "The comparison rows decompose the paired difference head - mlp (same training seeds, same episodes). "
        "'Detectable' is the true DS difference this design finds with 80% power at alpha 0.05 (two-sided t-test "
        "with the design's variance and Satterthwaite df); `automot study plan --from DIR --detect D` finds a "
        "design for a smaller one.",
        "",
        "| | sd training | sd sampling | sd episode | sd residual | difference | t-test p | detectable difference |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def sds(c: dict) -> str:
        return " | ".join(
            _num(None if c[k] is None else c[k] ** 0.5)
            for k in ("training", "sampling", "episode", "residual")
        )

    for key, c in power["heads"].items():
        out.append(f"| {key} | {sds(c)} | – | – | – |")
    for name, comp in power.get("comparisons", {}).items():
        t = comp["test"]
        out.append(
            f"| {name.replace('_vs_', ' - ')} | {sds(comp['components'])} | {_num(t['diff'])} | "
            f"{_num(t['p'], 3)} | **{_num(t['mde'])}** |"
        )
    return out


def _plot_profiles(study: Path, summary: dict) -> Path | None:
    """Performance profiles: the fraction of episodes with DS >= tau per head, with 95% CI bands."""
    import matplotlib.pyplot as plt

    profile = (summary.get("robust") or {}).get("profile") or {}
    keys = [k for k in profile if k != "taus"]
    if not keys:
        return None
    taus = np.asarray(profile["taus"])
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key in keys:
        p = profile[key]
        (line,) = ax.plot(taus, p["fraction"], label=key, lw=1.8)
        ax.fill_between(taus, p["low"], p["high"], color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("route score threshold tau")
    ax.set_ylabel("fraction of episodes with score >= tau")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Performance profiles (95% CI bands, hierarchical bootstrap)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = study / "performance_profile.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- failure analysis and DAgger (issue 11) ------------------------------------------------------------


def format_outcomes(config: StudyConfig, runs: list[dict]) -> list[str]:
    """Markdown lines: per head and scenario, how the episodes of all its runs ended, and its mean speed
    against the expert's on the same episodes."""
    from studies.failures import OUTCOMES, outcome_table

    table = outcome_table(runs)
    expert = table.get("expert", {})
    lines = [
        "## How episodes end",
        "",
        "Episode outcomes summed over every run of a head (completed / collision / off-road / timeout; they add up "
        "to the episodes run) and the mean ego speed over its episodes, against the expert's on the same seeds.",
        "",
        "| Head | scenario | episodes | completed | collision | off-road | timeout | mean speed (m/s) | speed / expert |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for head in [h.key for h in config.heads] + list(config.baselines):
        for scenario in config.data.scenarios:
            cell = table.get(head, {}).get(scenario)
            if cell is None:
                continue
            ref = expert.get(scenario, {}).get("mean_speed")
            ratio = None if ref in (None, 0) or cell["mean_speed"] is None else cell["mean_speed"] / ref
            lines.append(
                f"| {head} | {scenario} | {cell['episodes']} | "
                + " | ".join(str(cell[k]) for k in OUTCOMES)
                + f" | {_num(cell['mean_speed'], 1)} | {_num(ratio, 2)} |"
            )
    return lines


def _outcome_counts(dag: list[dict]) -> str:
    return "/".join(
        str(sum(d["outcomes"].get(k, 0) for d in dag))
        for k in ("completed", "collision", "offroad", "timeout")
    )


def format_dagger(study: Path, config: StudyConfig) -> list[str]:
    """Markdown lines: per DAgger round (0 = behaviour cloning), the closed-loop validation DS of the
    exported policy (mean over training seeds), samples added and wall times."""
    import json

    from studies.tasks import round_record_path

    records = {}
    for seed in config.training_seeds:
        for r in range(config.dagger.rounds + 1):
            path = round_record_path(study, seed, r)
            if path.exists():
                records[(seed, r)] = json.loads(path.read_text())
    if not records:
        return []
    lines = [
        "## Training rounds (DAgger learning curve)",
        "",
        f"Round 0 is behaviour cloning on the demonstrations; round r rolls out round r-1's policy on "
        f"{config.dagger.episodes} fresh train-split episodes per scenario "
        f"({', '.join(config.dagger.scenarios_of(config.data.scenarios))}"
        + (
            f"; {config.dagger.extra_episodes} more in each of {', '.join(config.dagger.extra_scenarios)}"
            if config.dagger.has_extra
            else ""
        )
        + f"; beta {config.dagger.beta}, decay "
        f"{config.dagger.beta_decay}), labels every visited state with the expert and fine-tunes on all data so far. "
        "Validation DS: closed loop on validation-split seeds, of the exported (selected) weights; mean over training seeds.",
        "",
        "| round | validation DS | rollout outcomes (completed/collision/off-road/timeout) | samples added | collect s | train s |",
        "|---|---|---|---|---|---|",
    ]
    for r in range(config.dagger.rounds + 1):
        rs = [rec for (seed, k), rec in sorted(records.items()) if k == r]
        if not rs:
            continue
        ds = [rec["validation"]["best"]["ds"] for rec in rs if rec.get("validation", {}).get("best")]
        dag = [rec["dagger"] for rec in rs if "dagger" in rec]
        outcomes = _outcome_counts(dag) if dag and all("outcomes" in d for d in dag) else "–"
        samples = sum(d["samples"] for d in dag) if dag else None
        collect_s = float(np.mean([d["collect_s"] for d in dag])) if dag else None
        lines.append(
            f"| {r} | {_num(float(np.mean(ds)) if ds else None, 1)} | {outcomes} | {samples if samples is not None else '–'} | "
            f"{_num(collect_s, 0)} | {_num(float(np.mean([rec['train_s'] for rec in rs])), 0)} |"
        )
    return lines


def format_refiner_dagger(study: Path, config: StudyConfig) -> list[str]:
    """Markdown lines: per refining head and refiner-DAgger round, the outcomes of the rollouts that
    round collected (its previous refiner driving train-split seeds, with the rollout noise), the
    samples added and wall times (means over training seeds)."""
    import json

    from studies.tasks import refiner_record_path

    spec = config.refiner_dagger
    if not spec.rounds:
        return []
    rows = []
    for head in [h.key for h in config.heads if h.key != "mlp"]:
        for r in range(spec.rounds + 1):
            paths = [refiner_record_path(study, seed, head, r) for seed in config.training_seeds]
            recs = [json.loads(p.read_text()) for p in paths if p.exists()]
            if not recs:
                continue
            dag = [rec["dagger"] for rec in recs if "dagger" in rec]
            ds = [rec["validation"]["best"]["ds"] for rec in recs if rec.get("validation", {}).get("best")]
            rows.append(
                f"| {head} | {r} | {_num(float(np.mean(ds)) if ds else None, 1)} | "
                f"{_outcome_counts(dag) if dag else '–'} | "
                f"{sum(d['samples'] for d in dag) if dag else '–'} | "
                f"{_num(float(np.mean([d['collect_s'] for d in dag])) if dag else None, 0)} | "
                f"{_num(float(np.mean([rec['train_s'] for rec in recs])), 0)} |"
            )
    if not rows:
        return []
    scenarios = ", ".join(spec.scenarios_of(config.data.scenarios))
    extra = (
        f"; {spec.extra_episodes} more in each of {', '.join(spec.extra_scenarios)}" if spec.has_extra else ""
    )
    return [
        "## Refiner DAgger rounds",
        "",
        f"Round 0 trains each refining head on the AE's data; round r rolls out round r-1's refiner "
        f"(sampling seed 0) on {spec.episodes} fresh train-split episodes per scenario ({scenarios}{extra}; "
        f"beta {spec.beta}), labels every visited state with the expert and trains the refiner again from "
        "scratch on the AE's data plus the head's rollouts so far. The outcomes are those of the rollouts "
        "(round r-1's refiner driving, summed over training seeds); the evaluated refiner is the last round's. "
        "Validation DS (when the study validates the refiner): closed loop on validation-split seeds, of the "
        "exported (selected) weights; mean over training seeds.",
        "",
        "| head | round | validation DS | rollout outcomes (completed/collision/off-road/timeout) | samples added | collect s | train s |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def format_failures(study: Path, config: StudyConfig) -> list[str]:
    """Markdown lines linking the worst episode's strip per head and scenario (`studies.failures`)."""
    import json

    from studies.tasks import failures_path

    lines = ["## Worst episode per head and scenario", ""]
    found = False
    for head in [h.key for h in config.heads]:
        path = failures_path(study, head)
        if not path.exists():
            continue
        for scenario, w in json.loads(path.read_text()).items():
            found = True
            lines.append(
                f"- {head}, {scenario}: run {w['run_id']}, seed {w['seed']}, {w['outcome']}, score {w['score']:.1f}: "
                f"[failures/{w['strip']}](failures/{w['strip']})"
            )
    return lines if found else []
