"""A whole (smoke-profile) study: sampling spread is where it should be, the report lists everything,
and a study killed mid-way then resumed ends with the summary of an uninterrupted one."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from automot.io import read_jsonl
from studies.config import load_study_config
from studies.runner import KILL_AFTER_ENV, run_study
from studies.summary import summarize_study

ROOT = Path(__file__).resolve().parents[2]


# The `smoke` fixture (one smoke-profile study per session) is in tests/studies/conftest.py.


def _by_id(runs):
    return {r["run_id"]: r for r in runs}


def test_every_run_finished_and_the_summary_matches_the_runs(smoke):
    result, runs = smoke
    s = result.summary
    # The MLP head is deterministic: one run per training seed; the diffusion head two; two baselines.
    assert s["complete"] and s["n_runs"] == len(runs) == 2 * 1 + 2 * 2 + 2
    assert s["config"]["head_sampling_seeds"] == {"mlp": [0], "diffusion": [0, 1]}
    mlp_ds = [r["closed_loop"]["ds"] for r in runs if r["head"] == "mlp"]
    assert s["heads"]["mlp"]["metrics"]["ds"]["mean"] == pytest.approx(sum(mlp_ds) / len(mlp_ds))
    assert s["heads"]["mlp"]["metrics"]["ds"]["best"] == pytest.approx(max(mlp_ds))
    assert set(s["headline"]) == {"mlp", "diffusion", "expert", "constant_velocity"}
    assert "diffusion_vs_mlp" in s["comparisons"]


def test_mlp_runs_once_per_training_seed_and_diffusion_has_sampling_spread(smoke):
    _, runs = smoke
    by_id = _by_id(runs)
    assert {rid for rid in by_id if rid.startswith("mlp")} == {"mlp__t0__s0", "mlp__t1__s0"}
    # The refiner's diagnostics run once per trained model, in its run under the first sampling seed.
    for t in (0, 1):
        assert (
            "refinement" in by_id[f"diffusion__t{t}__s0"]
            and "refinement" not in by_id[f"diffusion__t{t}__s1"]
        )
    assert smoke[0].summary["heads"]["diffusion"]["metrics"]["refine_ratio"]["n"] == 2
    # The diffusion head's noise comes from the sampling seed: plans (open loop) differ for every
    # trained model, and so does at least one closed-loop outcome.
    for t in (0, 1):
        a, b = by_id[f"diffusion__t{t}__s0"], by_id[f"diffusion__t{t}__s1"]
        assert a["open_loop"]["l2_avg_stp3"] != b["open_loop"]["l2_avg_stp3"]
    assert any(
        by_id[f"diffusion__t{t}__s0"]["closed_loop"]["episode_scores"]
        != by_id[f"diffusion__t{t}__s1"]["closed_loop"]["episode_scores"]
        for t in (0, 1)
    )
    spread = smoke[0].summary["heads"]["mlp"]["seed_spread"]["ds"]
    assert spread["within_training_std"] == 0.0


def test_copies_of_a_deterministic_heads_runs_do_not_count_as_runs(smoke):
    """A folder from before deterministic heads ran once holds their runs under every sampling seed;
    the summary leaves the copies out, so it is the summary of the planned runs."""
    result, runs = smoke
    config = load_study_config("smoke")
    copies = [
        {**r, "run_id": r["run_id"].replace("__s0", "__s1"), "sampling_seed": 1}
        for r in runs
        if r["head"] == "mlp"
    ]
    assert len(copies) == 2
    again = json.loads(json.dumps(summarize_study(runs + copies, config)))
    assert again == json.loads(result.summary_path.read_text())


def test_report_lists_every_head_seed_and_both_baselines(smoke):
    result, runs = smoke
    report = result.report_path.read_text()
    for head in ("mlp", "diffusion", "expert (baseline)", "constant_velocity (baseline)"):
        assert f"| {head} |" in report
    for r in runs:
        assert f"| {r['run_id']} |" in report
    for seed in (0, 1):
        assert f"diffusion__t{seed}__s0" in report and f"diffusion__t{seed}__s1" in report
        assert f"mlp__t{seed}__s0" in report and f"mlp__t{seed}__s1" not in report
    assert "Deterministic heads (mlp: the plan ignores the sampling seed)" in report
    for plot in ("ds_by_head.png", "l2_by_horizon.png", "performance_profile.png", "trajectories.png"):
        assert (result.study_dir / plot).stat().st_size > 5000
        assert f"({plot})" in report


def test_a_killed_and_resumed_study_ends_with_the_same_summary(smoke, tmp_path):
    result, _ = smoke
    study = tmp_path / "resumed"
    env = {**os.environ, KILL_AFTER_ENV: "9", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "automot.cli",
        "study",
        "--profile",
        "smoke",
        "--out",
        str(study),
        "--workers",
        "2",
        "--progress-every",
        "0",
    ]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # Not a terminal: plain progress lines with the running tasks' phases, finished tasks and an ETA.
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert lines and all("running" in ln and "pending" in ln and "ETA" in ln for ln in lines)
    assert any("collect:train collecting" in ln for ln in lines) and any(
        "finished collect:" in ln for ln in lines
    )
    assert not (study / "summary.json").exists()
    finished_before = len(read_jsonl(study / "runs.jsonl"))
    assert finished_before < 8  # of the 8 runs
    resumed = run_study(study, load_study_config("smoke"), workers=2, progress=None)
    assert resumed.summary_path.read_bytes() == result.summary_path.read_bytes()


def test_resuming_with_another_config_is_refused(smoke):
    result, _ = smoke
    # (Seeds appended would grow the study: tests/studies/test_study_contract.py.)
    other = load_study_config("smoke", {"training_seeds": [1, 0]})
    before = (result.study_dir / "study.json").read_bytes()
    with pytest.raises(ValueError, match=r"expected the config it was started with.*training_seeds"):
        run_study(result.study_dir, other, workers=1, progress=None)
    assert (result.study_dir / "study.json").read_bytes() == before


def test_submitit_local_executor_runs_the_same_tasks(smoke, tmp_path):
    """The cluster path (submitit) in its local mode: evaluation jobs of a study whose training is done."""
    result, runs = smoke
    config = load_study_config(
        "smoke",
        {
            "heads": [{"name": "mlp"}],
            "training_seeds": [0],
            "sampling_seeds": [0],
            "baselines": ["constant_velocity"],
        },
    )
    study = tmp_path / "submitit"
    for part in ("data", "ue", "seeds/0/policy_mlp"):
        shutil.copytree(result.study_dir / part, study / part)
    out = run_study(study, config, workers=2, executor="submitit-local", progress=None)
    new = _by_id(read_jsonl(study / "runs.jsonl"))
    old = _by_id(runs)
    assert set(new) == {"mlp__t0__s0", "constant_velocity"}
    for rid in new:
        assert new[rid]["closed_loop"]["episode_scores"] == old[rid]["closed_loop"]["episode_scores"]
    assert out.summary["complete"]
    assert list((study / "work" / "submitit").glob("*_result.pkl"))  # really ran as submitit jobs


def test_summary_has_robust_aggregates_and_the_detectable_difference(smoke):
    import numpy as np
    from scipy import stats

    result, runs = smoke
    s = result.summary
    mlp_scores = [v for r in runs if r["head"] == "mlp" for v in r["closed_loop"]["episode_scores"].values()]
    assert s["robust"]["iqm"]["mlp"]["estimate"] == pytest.approx(stats.trim_mean(mlp_scores, 0.25))
    assert s["robust"]["mean"]["mlp"]["estimate"] == pytest.approx(np.mean(mlp_scores))
    pairs = s["robust"]["probability_of_improvement"]
    assert len(pairs) == 6
    # One run each, per scenario: 1 if the expert's DS is higher, 1/2 on a tie, 0 otherwise; mean over scenarios.
    by_id = _by_id(runs)
    ex, cv = (by_id[k]["closed_loop"]["per_scenario"] for k in ("expert", "constant_velocity"))
    wins = [(ex[m]["ds"] > cv[m]["ds"]) + 0.5 * (ex[m]["ds"] == cv[m]["ds"]) for m in ex]
    assert pairs["expert > constant_velocity"]["estimate"] == pytest.approx(np.mean(wins))
    comp = s["power"]["comparisons"]["diffusion_vs_mlp"]
    assert comp["test"]["mde"] > 0 and s["power"]["heads"]["mlp"]["sampling"] == 0.0  # a deterministic head
    report = result.report_path.read_text()
    for section in (
        "## Robust aggregates",
        "| X | Y | P(X > Y)",
        "detectable difference",
        "performance_profile.png",
    ):
        assert section in report
    # Every task wrote its status file (its duration feeds `automot study plan`).
    statuses = list((result.study_dir / "work" / "status").glob("*.json"))
    assert len(statuses) == 3 + 1 + 2 + 2 + 6 + 2 + 2  # ... 6 head runs, 2 baselines, 2 failure strips


def test_study_plan_cli_from_the_smoke_study(smoke, capsys):
    from automot.cli import main

    result, _ = smoke
    assert main(["study", "plan", "--from", str(result.study_dir), "--detect", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["designs"] and out["designs"][0]["wall_s"] > 0
    assert min(out["designs"][0]["power"].values()) >= 0.8
    walls = [d["wall_s"] for d in out["designs"]]
    assert walls == sorted(walls)
    assert main(["study", "plan", "--from", str(result.study_dir), "--detect", "20"]) == 0
    assert "cheapest first" in capsys.readouterr().out
    assert main(["study", "plan", "--from", str(result.study_dir), "--detect", "-1"]) == 2
    assert "--detect: expected a DS difference > 0, got -1.0" in capsys.readouterr().err


def test_variance_study_example_reports_from_python(smoke, tmp_path, capsys):
    """examples/variance_study.py on the smoke profile; the finished tasks are copied in, so the example
    resumes them and writes the summary and report (the tasks themselves ran in the fixture)."""
    import runpy

    result, _ = smoke
    study = tmp_path / "example"
    shutil.copytree(
        result.study_dir, study, ignore=shutil.ignore_patterns("summary.json", "report.md", "*.png")
    )
    main = runpy.run_path(str(ROOT / "examples" / "variance_study.py"))["main"]
    summary = main(["--out", str(study), "--profile", "smoke"])
    assert (study / "summary.json").read_bytes() == result.summary_path.read_bytes()
    printed = capsys.readouterr().out
    assert "IQM of episode DS, mlp" in printed and "P(mlp > diffusion)" in printed
    assert "detects a true difference of" in printed and summary["complete"]


def test_refiner_dagger_example_rolls_out_the_refiner_and_trains_it_again(smoke, tmp_path, capsys):
    """examples/refiner_dagger.py on the smoke study: the rollouts are the diffusion policy's, on seeds
    the study never used, labelled by the expert; the new refiner sits on the study's unchanged AE and
    MLP head and differs from the study's refiner (it saw the rollouts)."""
    import json
    import runpy

    import torch
    from safetensors.torch import load_file

    from studies.tasks import policy_dir

    result, _ = smoke
    study = result.study_dir
    before = {p: p.read_bytes() for p in sorted(study.rglob("*")) if p.is_file() and p.suffix != ".lock"}
    main = runpy.run_path(str(ROOT / "examples" / "refiner_dagger.py"))["main"]
    new = main(["--study", str(study), "--seed", "0", "--out", str(tmp_path / "rd")])
    assert "rollouts: 4 episodes" in capsys.readouterr().out
    index = json.loads((tmp_path / "rd" / "0" / "rollouts" / "index.json").read_text())
    assert index["kind"] == "on_policy" and index["complete"]
    assert index["config"]["policy_id"].startswith("policy_diffusion@")
    config = json.loads((study / "study.json").read_text())
    assert min(e["seed"] for e in index["episodes"]) >= config["data"]["train_episodes"]
    weights = load_file(new / "action_expert.safetensors")
    old = load_file(policy_dir(study, 0, "diffusion") / "action_expert.safetensors")
    mlp = load_file(policy_dir(study, 0, "mlp") / "action_expert.safetensors")
    assert weights.keys() == old.keys()
    refiner = [k for k in weights if k.startswith("head.denoiser.")]
    assert refiner and any(not torch.equal(weights[k], old[k]) for k in refiner)
    assert all(torch.equal(weights[k], mlp[k]) for k in mlp if not k.startswith("head."))
    assert {p: p.read_bytes() for p in before} == before  # the study folder is only read

    # The same round as a stage of a study (`refiner_dagger`): its rollouts and its refiner are the
    # example's, byte for byte; the study evaluates the new refiner and reports the round.
    from studies.tasks import refiner_dagger_dir, refiner_record_path, refiner_round_dir

    over = {"refiner_dagger": {"rounds": 1, "episodes": 4}, "training_seeds": [0], "sampling_seeds": [0]}
    config = load_study_config("smoke", {**over, "baselines": []})
    staged = run_study(tmp_path / "staged", config, workers=2, progress=None)
    rollouts = json.loads(
        (refiner_dagger_dir(staged.study_dir, 0, "diffusion", 1) / "index.json").read_text()
    )
    assert rollouts["episodes"] == index["episodes"] and rollouts["config"] == index["config"]
    first = refiner_round_dir(staged.study_dir, config, 0, "diffusion", 0)
    assert (first / "action_expert.safetensors").read_bytes() == (
        policy_dir(study, 0, "diffusion") / "action_expert.safetensors"
    ).read_bytes()  # round 0 is the plain study's refiner
    final = load_file(policy_dir(staged.study_dir, 0, "diffusion") / "action_expert.safetensors")
    assert final.keys() == weights.keys() and all(torch.equal(final[k], weights[k]) for k in weights)
    record = json.loads(refiner_record_path(staged.study_dir, 0, "diffusion", 1).read_text())
    assert record["dagger"]["episodes"] == 4 and record["dagger"]["samples"] == index["num_samples"]
    assert "## Refiner DAgger rounds" in staged.report_path.read_text()
