"""Statistics (`summary.json`) and `report.md` of a latent-action study (`studies.latent`).

- arms: every (arm, label fraction), the student and the baselines, each metric described over its
  runs (one run per training seed: the MLP head is deterministic), CIs by bootstrap over seeds;
- data efficiency, per label fraction: pretrained minus from-scratch (bootstrap CI, Welch's test on
  the seed means) and the paired per-seed ratio pretrained / scratch (mean and CI);
- the student against its teacher (the pretrained arm at `distill_fraction`): DS difference and
  ratio, per-step latencies and their ratios at batch 1, parameter counts;
- the LAM's quality (`latent/lam_quality.json`).

Runs are sorted and the bootstrap seeded, so the summary depends only on the set of finished runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automot.io import write_text_atomic
from studies.config import StudyConfig
from studies.latent import ARMS, STUDENT, arm_key, pct, read_quality
from studies.stats import compare, describe
from studies.summary import METRICS, _clean, _value

EFFICIENCY_METRICS = ("l2_avg", "l2_3s", "ds", "acc_joint")


def _describe_runs(rs: list[dict], boot: int) -> dict:
    out = {}
    for name, where in METRICS.items():
        pairs = [(r, v) for r in rs if (v := _value(r, where)) is not None]
        if pairs:
            out[name] = describe(
                [v for _, v in pairs],
                higher_is_better=where[2],
                n_boot=boot,
                seed=0,
                clusters=[r["training_seed"] for r, _ in pairs]
                if pairs[0][0]["training_seed"] is not None
                else None,
            )
    return out


def _by_seed(rs: list[dict], name: str) -> dict[int, float]:
    return {r["training_seed"]: v for r in rs if (v := _value(r, METRICS[name])) is not None}


def _paired(a: list[dict], b: list[dict], name: str, boot: int) -> dict:
    """Pretrained (a) vs scratch (b) on one metric: difference (CI, Welch) and paired per-seed ratio."""
    va, vb = _by_seed(a, name), _by_seed(b, name)
    if not va or not vb:
        return {}
    out = compare(
        list(va.values()), list(vb.values()), n_boot=boot, seed=0, clusters_a=list(va), clusters_b=list(vb)
    )
    seeds = sorted(set(va) & set(vb))
    ratios = [va[s] / vb[s] for s in seeds if vb[s] != 0]
    if ratios:
        out["paired_ratio"] = describe(ratios, higher_is_better=False, n_boot=boot, seed=0)
    out["ratio_of_means"] = (
        float(np.mean(list(va.values())) / np.mean(list(vb.values()))) if np.mean(list(vb.values())) else None
    )
    return out


def summarize_latent_study(study: Path, runs: list[dict], config: StudyConfig) -> dict:
    lat = config.latent
    boot = config.bootstrap_samples
    runs = sorted(runs, key=lambda r: r["run_id"])
    keys = [arm_key(a, f) for f in lat.label_fractions for a in ARMS] + [STUDENT, *config.baselines]
    by_key = {k: [r for r in runs if r["head"] == k] for k in keys}
    arms = {}
    for key, rs in by_key.items():
        arms[key] = {
            "kind": "baseline" if key in config.baselines else "latent",
            "n_runs": len(rs),
            "runs": [r["run_id"] for r in rs],
            "metrics": _describe_runs(rs, boot),
        }
    efficiency = {}
    for f in lat.label_fractions:
        pre, scratch = by_key[arm_key("pretrained", f)], by_key[arm_key("scratch", f)]
        efficiency[pct(f)] = {m: _paired(pre, scratch, m, boot) for m in EFFICIENCY_METRICS}
    teacher_key = arm_key("pretrained", lat.distill_fraction)
    students = by_key[STUDENT]
    student = {"teacher": teacher_key}
    if students:
        student["vs_teacher"] = {m: _paired(students, by_key[teacher_key], m, boot) for m in ("ds", "l2_avg")}
        lat_runs = [r["latency"] for r in students if "latency" in r]
        for name in (
            "student_ms",
            "teacher_ae_ms",
            "teacher_full_ms",
            "student_over_teacher_ae",
            "student_over_teacher_full",
            "student_cpu_ms",
            "teacher_ae_cpu_ms",
            "teacher_full_cpu_ms",
            "student_over_teacher_ae_cpu",
            "student_over_teacher_full_cpu",
        ):
            values = [x[name] for x in lat_runs]
            if values:
                student[name] = describe(values, higher_is_better=False, n_boot=boot, seed=0)
        params = [r["parameters"] for r in students if "parameters" in r]
        if params:
            student["parameters"] = params[0]
    expected = (
        2 * len(lat.label_fractions) * len(config.training_seeds)
        + len(config.training_seeds)
        + len(config.baselines)
    )
    summary = {
        "config": {
            "preset": config.preset,
            "training_seeds": list(config.training_seeds),
            "label_fractions": list(lat.label_fractions),
            "distill_fraction": lat.distill_fraction,
            "scenarios": list(config.data.scenarios),
            "episodes_per_scenario": config.eval.episodes,
            "labeled_train_episodes": config.data.train_episodes,
            "unlabeled_episodes": lat.unlabeled_episodes,
        },
        "complete": len(runs) == expected,
        "n_runs": len(runs),
        "expected_runs": expected,
        "lam_quality": read_quality(study),
        "arms": arms,
        "data_efficiency": efficiency,
        "student": student,
        "headline": {
            key: {m: arms[key]["metrics"].get(m, {}).get("mean") for m in ("ds", "l2_avg")}
            for key in keys
            if arms[key]["metrics"]
        },
    }
    return _clean(summary)


def _n(x, d=3) -> str:
    return "–" if x is None else f"{x:.{d}f}"


def _ci(m: dict | None, d=3) -> str:
    if not m or m.get("mean") is None:
        return "–"
    std = m.get("std")
    core = f"{m['mean']:.{d}f}" + ("" if std is None else f" ± {std:.{d}f}")
    return f"{core} [{_n(m.get('ci_low'), d)}, {_n(m.get('ci_high'), d)}]"


def format_latent_headline(summary: dict) -> str:
    """One markdown table: DS and L2 per arm (mean over training seeds)."""
    lines = ["| arm | runs | DS mean | L2 avg (m) |", "|---|---|---|---|"]
    for key, entry in summary["arms"].items():
        m = entry["metrics"]
        if "ds" in m:
            lines.append(
                f"| {key} | {entry['n_runs']} | {_n(m['ds']['mean'], 2)} | {_n(m.get('l2_avg', {}).get('mean'))} |"
            )
    return "\n".join(lines)


def write_latent_report(study: Path, config: StudyConfig, summary: dict, runs: list[dict]) -> Path:
    lat = config.latent
    arms = summary["arms"]
    out = [
        "# Latent-action study: LAM -> AE pretraining -> fine-tuning at label fractions -> distilled student",
        "",
        f"Preset `{config.preset}`; training seeds {config.training_seeds}; scenarios {config.data.scenarios}; "
        f"{config.data.train_episodes} labeled and {lat.unlabeled_episodes} unlabeled train episodes per scenario; "
        f"{config.eval.episodes} closed-loop episode(s) per scenario on test seeds; {summary['n_runs']}/{summary['expected_runs']} "
        "runs. Values: mean ± std over training seeds [95% bootstrap CI over seeds].",
        "",
    ]
    q = summary.get("lam_quality")
    if q:
        cb = q["codebook"]
        out += [
            "## Latent action model (held-out test transitions)",
            "",
            f"Codebook perplexity {cb['perplexity']:.2f} of {config.latent.lam.get('vq', {}).get('codebook_size', 16)} "
            f"(usage {100 * cb['usage']:.0f} %, {cb['combinations']} distinct code tuples over {q['transitions']} transitions); "
            f"reconstruction MSE {q['recon_mse']:.5f} vs copy-current-frame {q['copy_mse']:.5f} (ratio {q['recon_over_copy']:.3f}).",
            "",
        ]
        if "speed_change" in q:  # a LAM with odometry (`LAMConfig.odometry`)
            sc = q["speed_change"]
            out[-1:] = [
                f"The LAM reads the ego's speedometer: its FDM predicts the speed change over a transition with "
                f"RMSE {sc['rmse']:.3f} m/s vs no change {sc['zero_rmse']:.3f} m/s.",
                "",
            ]
        if "probe" in q:
            out += [
                "| linear probe (codes -> meta-action) | accuracy | balanced accuracy | majority class | n train / test |",
                "|---|---|---|---|---|",
            ]
            for name, p in q["probe"].items():
                out.append(
                    f"| {name} | {100 * p['accuracy']:.1f} % | {100 * p['balanced_accuracy']:.1f} % | {100 * p['majority']:.1f} % | "
                    f"{p['n_train']} / {p['n_test']} |"
                )
            out.append("")
    out += [
        "## Data efficiency: pretrained vs from-scratch AE",
        "",
        "| labels | metric | scratch | pretrained | pretrained − scratch [CI] | Welch p | paired ratio pre/scratch [CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in lat.label_fractions:
        eff = summary["data_efficiency"][pct(f)]
        for m in EFFICIENCY_METRICS:
            c = eff.get(m) or {}
            s_m = arms[arm_key("scratch", f)]["metrics"].get(m)
            p_m = arms[arm_key("pretrained", f)]["metrics"].get(m)
            r = c.get("paired_ratio")
            out.append(
                f"| {pct(f)} % | {m} | {_ci(s_m)} | {_ci(p_m)} | {_n(c.get('diff'))} [{_n(c.get('ci_low'))}, {_n(c.get('ci_high'))}] | "
                f"{_n(c.get('welch_p'))} | {_ci(r)} |"
            )
    st = summary["student"]
    out += ["", f"## Distilled student vs its teacher ({st['teacher']})", ""]
    if "vs_teacher" in st:
        out += [
            "| | student | teacher | student − teacher [CI] | paired ratio [CI] |",
            "|---|---|---|---|---|",
        ]
        for m in ("ds", "l2_avg"):
            c = st["vs_teacher"].get(m) or {}
            out.append(
                f"| {m} | {_ci(arms[STUDENT]['metrics'].get(m))} | {_ci(arms[st['teacher']]['metrics'].get(m))} | "
                f"{_n(c.get('diff'))} [{_n(c.get('ci_low'))}, {_n(c.get('ci_high'))}] | {_ci(c.get('paired_ratio'))} |"
            )

        def mean(name):
            return _n(st.get(name, {}).get("mean"), 2)

        out += [
            "",
            "Per step at batch 1, medians interleaved in one process, mean over seeds (wall ms / CPU ms of the "
            "process, one thread):",
            "",
            "| | student | teacher AE step (cached UE) | teacher with UE refresh | student / AE step | student / with UE |",
            "|---|---|---|---|---|---|",
            f"| wall | {mean('student_ms')} | {mean('teacher_ae_ms')} | {mean('teacher_full_ms')} | "
            f"{mean('student_over_teacher_ae')} | {mean('student_over_teacher_full')} |",
            f"| CPU | {mean('student_cpu_ms')} | {mean('teacher_ae_cpu_ms')} | {mean('teacher_full_cpu_ms')} | "
            f"{mean('student_over_teacher_ae_cpu')} | {mean('student_over_teacher_full_cpu')} |",
            "",
            f"Parameters: {st.get('parameters')}.",
        ]
    out += [
        "",
        "## Every run",
        "",
        "| run | arm | labels | seed | DS | SR % | L2 avg | acc joint |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: r["run_id"]):
        cl, ol = r.get("closed_loop", {}), r.get("open_loop", {})
        frac = r.get("label_fraction")
        out.append(
            f"| {r['run_id']} | {r['head']} | {'–' if frac is None else pct(frac) + ' %'} | "
            f"{'–' if r['training_seed'] is None else r['training_seed']} | {_n(cl.get('ds'), 2)} | {_n(cl.get('sr'), 1)} | "
            f"{_n(ol.get('l2_avg_stp3'))} | {_n(ol.get('acc_joint'))} |"
        )
    plot = _plot(study, config, summary)
    if plot is not None:
        out += ["", f"![data efficiency]({plot.name})"]
    path = study / "report.md"
    write_text_atomic(path, "\n".join(out) + "\n")
    return path


def _plot(study: Path, config: StudyConfig, summary: dict) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fracs = config.latent.label_fractions
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric, label in ((axes[0], "l2_avg", "open-loop L2 avg (m)"), (axes[1], "ds", "closed-loop DS")):
        for arm, colour in (("scratch", "gray"), ("pretrained", "tab:blue")):
            ms = [summary["arms"][arm_key(arm, f)]["metrics"].get(metric) for f in fracs]
            xs = [100 * f for f, m in zip(fracs, ms) if m]
            if not xs:
                continue
            mean = np.array([m["mean"] for m in ms if m])
            lo = np.array([m.get("ci_low") if m.get("ci_low") is not None else m["mean"] for m in ms if m])
            hi = np.array([m.get("ci_high") if m.get("ci_high") is not None else m["mean"] for m in ms if m])
            ax.errorbar(xs, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=3, color=colour, label=arm)
        ax.set_xscale("log")
        ax.set_xticks([100 * f for f in fracs], [f"{pct(f)}%" for f in fracs])
        ax.set_xlabel("labeled training episodes")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Latent-action pretraining vs from scratch (mean, 95% CI over training seeds)", fontsize=10)
    fig.tight_layout()
    path = study / "data_efficiency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
