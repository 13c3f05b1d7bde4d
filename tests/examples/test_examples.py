"""Every example file runs end to end on tiny settings (the variance-study example runs in
tests/studies/test_study.py, on the smoke study)."""

import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def example(name: str):
    """The example's `main`, loaded from its file (its `if __name__ == "__main__"` block does not run)."""
    return runpy.run_path(str(ROOT / "examples" / name))["main"]


@pytest.fixture(scope="module")
def refiner_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("example_refiner")
    argv = ["--out", str(out), "--data", str(tiny_dataset), "--ae-steps", "12", "--refiner-steps", "8"]
    return out, example("train_refiner.py")(argv)


def test_train_refiner_trains_around_a_frozen_ae(refiner_run, tiny_dataset, capsys):
    from training.evaluate import evaluate_open_loop
    from training.policy import load_pretrained

    out, results = refiner_run
    assert (out / "policy_mlp" / "mot_config.json").exists()
    assert load_pretrained(out / "policy_diffusion").ae.config.head == "diffusion"
    for r in results.values():
        assert math.isfinite(r["l2_avg_stp3"]) and r["samples"] > 0
    # The AE was frozen: the prior under the refiner plans exactly like the AE + MLP policy it started from.
    direct = evaluate_open_loop(load_pretrained(out / "policy_mlp"), str(tiny_dataset / "test"))
    assert results["mlp (prior)"]["l2_avg_stp3"] == pytest.approx(direct["l2_avg_stp3"], abs=1e-6)
    assert results["diffusion"]["l2_avg_stp3"] != results["mlp (prior)"]["l2_avg_stp3"]  # the refiner acts


def test_swap_heads_compares_open_and_closed_loop(refiner_run, tiny_dataset, capsys):
    out, results = refiner_run
    argv = [
        "--policy",
        str(out / "policy_diffusion"),
        "--data",
        str(tiny_dataset),
        "--scenarios",
        "highway",
        "--episodes",
        "1",
        "--duration-s",
        "12",
        "--sampling-seeds",
        "0",
        "1",
    ]
    rows = example("swap_heads.py")(argv)
    assert set(rows) == {("diffusion", 0), ("diffusion", 1), ("mlp", 0)}
    assert rows[("mlp", 0)]["l2_avg"] == pytest.approx(results["mlp (prior)"]["l2_avg_stp3"], abs=1e-6)
    assert rows[("diffusion", 0)]["l2_avg"] != rows[("diffusion", 1)]["l2_avg"]  # sampling seeds matter
    for r in rows.values():
        assert 0.0 <= r["ds"] <= 100.0
    printed = capsys.readouterr().out
    assert "sampling seed" in printed and "DS" in printed
    with pytest.raises(ValueError, match="expected a policy with a diffusion head, got 'mlp'"):
        example("swap_heads.py")(["--policy", str(out / "policy_mlp"), "--episodes", "1"])


def test_qwen3vl_example_skips_without_a_folder_and_runs_with_one(tmp_path, monkeypatch, capsys):
    from mot.config import QwenUEConfig
    from mot.qwen_offline import build_raw_qwen3vl, save_qwen3vl

    monkeypatch.delenv("AUTOMOT_QWEN3VL_DIR", raising=False)
    run = example("qwen3vl_backbone.py")
    assert run([]) is None
    assert "skipped: no Qwen3-VL checkpoint folder given" in capsys.readouterr().out
    # A Qwen3-VL checkpoint folder in the HF layout (here a tiny random one, written like a real one).
    model, processor = build_raw_qwen3vl(QwenUEConfig())
    folder = save_qwen3vl(model, processor, tmp_path / "Qwen3-VL-tiny")
    out = run(["--ue", str(folder), "--steps", "3"])
    assert out["ue_params"] == sum(p.numel() for p in model.parameters())
    assert out["cache_ages"] == [0, 1, 0]  # the UE runs every 2 steps, the AE every step
    with pytest.raises(SystemExit, match=r"expected a local Qwen3-VL folder with config\.json"):
        run(["--ue", str(tmp_path)])


def test_refiner_recipe_compares_variants_with_the_prior_on_held_out_data(refiner_run, tiny_dataset, capsys):
    from training.evaluate import evaluate_open_loop
    from training.policy import load_pretrained

    out, _ = refiner_run
    policy, val = out / "policy_mlp", tiny_dataset / "val"
    argv = [
        "--policy",
        str(policy),
        "--train",
        str(tiny_dataset / "train"),
        "--val",
        str(val),
        "--steps",
        "4",
    ]
    small = '{"refiner": {"dim": 32, "depth": 1, "moa": {"num_heads": 4}}}'
    results = example("refiner_recipe.py")([*argv, "--variant", f"tiny={small}"])
    r = results["tiny"]
    # The prior the variants are compared with is the AE + MLP policy's own open-loop plan.
    direct = evaluate_open_loop(load_pretrained(policy), str(val))
    assert r["prior_l2_avg"] == pytest.approx(direct["l2_avg_stp3"], abs=1e-5)
    assert r["ratio"] == pytest.approx(r["l2_avg"] / r["prior_l2_avg"])
    assert set(r["l2_avg_by_steps"]) == {1, 2, 5} and r["overrides"]["refiner"]["dim"] == 32
    assert "| tiny |" in capsys.readouterr().out


def test_synthetic_heads_example_trains_both_heads(capsys):
    results = example("synthetic_heads.py")(["--seconds", "0.3"])
    assert set(results) == {"mlp", "diffusion"} and all(r["steps"] > 0 for r in results.values())
    assert "diffusion" in capsys.readouterr().out


def test_readme_links_every_example_and_a_test_runs_each():
    readme = (ROOT / "README.md").read_text()
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for path in sorted((ROOT / "examples").glob("*.py")):
        assert f"(examples/{path.name})" in readme, f"README does not link {path.name}"
        runs = f'"{path.name}"' in tests or f'"examples.{path.stem}"' in tests  # by file or as a module
        assert runs, f"no test runs {path.name}"


def test_latent_toy_ablation_example_scores_every_fdm(capsys):
    rows = example("latent_toy_ablation.py")(["--steps", "2"])
    assert len(rows) == 4  # residual only / + warp, x one or three reconstruction scales
    for s in rows.values():
        assert 1.0 <= s["perplexity"] <= 16.0 and 0.0 < s["usage"] <= 1.0
        assert 0.0 <= s["probe"]["accuracy"] <= 1.0
    assert "| residual + warp |" in capsys.readouterr().out


def test_paired_arms_pairs_by_training_seed_and_episode(tmp_path, capsys):
    import json

    def study(name, scores):  # scores[training seed] = [(scenario, test seed, score, outcome)]
        runs = tmp_path / name / "runs"
        runs.mkdir(parents=True)
        for t, rows in scores.items():
            lines = [
                json.dumps(
                    {"scenario": s, "seed": e, "score": v, "outcome": o, "extra": {"mean_speed": 10.0}}
                )
                for s, e, v, o in rows
            ]
            (runs / f"mlp__t{t}__s0.episodes.jsonl").write_text("\n".join(lines) + "\n")
        return f"{name}={tmp_path / name}"

    base = {t: [("highway", 1, 50.0, "timeout"), ("merge", 1, 100.0, "completed")] for t in (0, 1, 2)}
    # Arm: +10 on highway for seed 0, +20 for seed 1, +30 for seed 2; merge unchanged.
    arm = {
        t: [("highway", 1, 60.0 + 10 * t, "completed"), ("merge", 1, 100.0, "completed")] for t in (0, 1, 2)
    }
    example("paired_arms.py")([study("bc", base), study("new", arm)])
    out = capsys.readouterr().out
    assert "| bc | 50.0 | 100.0 | nan | nan | 75.00 ± 0.00 |" in out
    assert "| new | 70.0 | 100.0 |" in out and "6 / 0 / 0 / 0 of 6" in out
    # Per-seed paired differences +5 / +10 / +15 (the mean over each seed's two episodes): mean +10,
    # t-interval 10 +- t(0.975, 2) * 5 / sqrt(3) = [-2.4, +22.4]; highway +20, merge +0.
    assert "| new | +10.0 | +5.0 / +10.0 / +15.0 | [-2.4, +22.4] |" in out
    assert out.rstrip().endswith("| +20.0 | +0.0 | +nan | +nan |")


def test_decision_confusion_agrees_with_the_open_loop_metrics(refiner_run, tiny_dataset, capsys):
    """Its confusion's diagonal is the open-loop longitudinal accuracy per horizon, its row counts are the
    expert's labels, and its distances are those of the plan and the labels."""
    from driving.dataset import DrivingDataset
    from training.evaluate import evaluate_open_loop
    from training.policy import load_pretrained

    out, _ = refiner_run
    policy, test = out / "policy_mlp", tiny_dataset / "test"
    result = example("decision_confusion.py")(["--policy", str(policy), "--data", str(test)])
    m = result["confusion"]
    dataset = DrivingDataset([str(test)])
    labels = np.stack([dataset[i]["longitudinal"].numpy() for i in range(len(dataset))])  # (N, K)
    assert result["samples"] == len(dataset) == m[0].sum()
    for k in range(m.shape[0]):
        np.testing.assert_array_equal(m[k].sum(axis=1), np.bincount(labels[:, k], minlength=m.shape[1]))
    direct = evaluate_open_loop(load_pretrained(policy), str(test))
    for k, h in enumerate(("1s", "2s", "3s")):
        assert np.trace(m[k]) / m[k].sum() == pytest.approx(direct[f"acc_longitudinal_{h}"], abs=1e-9)
    first = labels[:, 0]
    expert_3s = np.stack([np.linalg.norm(dataset[i]["waypoints"][-1].numpy()) for i in range(len(dataset))])
    for a, name in enumerate(result["actions"]):
        if (first == a).any():
            assert result["rows"][name]["n"] == int((first == a).sum())
            assert result["rows"][name]["expert_3s_m"] == pytest.approx(
                expert_3s[first == a].mean(), rel=1e-5
            )
    assert "plan - expert" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        example("decision_confusion.py")(
            ["--policy", str(policy), "--data", str(test), "--scenario", "nowhere"]
        )
    assert "--scenario: expected scenarios with samples" in capsys.readouterr().err


def test_speed_sensitivity_against_planners_with_a_known_answer(refiner_run, tiny_dataset, capsys):
    """A constant-velocity planner moves its t s waypoint by delta * t; one that reads only the history's
    speed moves it only with --history; the real policy's numbers come back from the command line."""
    from automot import spec
    from driving.dataset import DrivingDataset

    module = runpy.run_path(str(ROOT / "examples" / "speed_sensitivity.py"))
    sensitivity = module["speed_sensitivity"]
    times = torch.tensor(spec.waypoint_times_s())
    dataset = DrivingDataset([str(tiny_dataset / "test")])

    def keeps_speed(sensors):
        v = sensors.ego_state[:, module["SPEED"]]
        return torch.stack((v[:, None] * times, torch.zeros(len(v), len(times))), dim=-1)

    def history_speed(sensors):
        v = sensors.ego_history[:, -1, module["HISTORY_SPEED"]].clamp(min=0)
        return torch.stack((v[:, None] * times, torch.zeros(len(v), len(times))), dim=-1)

    r = sensitivity(keeps_speed, dataset, 1.5)
    assert r["samples"] == len(dataset)
    assert (r["moved_1s_m"], r["moved_3s_m"]) == (pytest.approx(1.5, abs=1e-5), pytest.approx(4.5, abs=1e-5))
    assert (r["per_m_s_1s"], r["per_m_s_3s"]) == (pytest.approx(1.0, abs=1e-5), pytest.approx(3.0, abs=1e-5))
    assert sensitivity(history_speed, dataset, 1.5)["moved_3s_m"] == 0.0
    assert sensitivity(history_speed, dataset, 1.5, history=True)["moved_3s_m"] == pytest.approx(
        4.5, abs=1e-5
    )

    out, _ = refiner_run
    policy = str(out / "policy_mlp")
    got = example("speed_sensitivity.py")(["--policy", policy, "--data", str(tiny_dataset / "test")])
    direct = sensitivity(module["policy_plan"](policy), dataset, 2.0)
    assert got[policy] == pytest.approx(direct)
    assert f"| {policy} | {direct['moved_1s_m']:+.3f} |" in capsys.readouterr().out
    for bad, message in (
        (["--delta", "0"], "--delta: expected a speed offset != 0"),
        (["--scenario", "nowhere"], "--scenario: expected"),
    ):
        with pytest.raises(SystemExit):
            example("speed_sensitivity.py")(["--policy", policy, "--data", str(tiny_dataset / "test"), *bad])
        assert message in capsys.readouterr().err


def test_schedule_replay_reads_a_finished_studys_task_times(tmp_path, capsys):
    """On the demo's task graph with one minute per task: one worker takes every minute in either
    order; two take at least half of them, and the longest-chain-first order is never the slower."""
    import json

    from studies.config import load_study_config
    from studies.tasks import plan_tasks

    config = load_study_config("demo")
    (tmp_path / "work" / "status").mkdir(parents=True)
    (tmp_path / "study.json").write_text(json.dumps(config.to_dict()))
    tasks = plan_tasks(config)
    for t in tasks:
        (tmp_path / "work" / "status" / f"{t.id.replace(':', '_')}.json").write_text('{"elapsed_s": 60.0}')
    result = example("schedule_replay.py")([str(tmp_path), "--workers", "1", "2"])
    n = len(tasks)
    assert result[1] == (60.0 * n, 60.0 * n)
    plan, ranked = result[2]
    assert 30.0 * n <= ranked <= plan
    assert f"| 1 | {n:.1f} | {n:.1f} | {n:.1f} |" in capsys.readouterr().out
    (tmp_path / "work" / "status" / "ue.json").unlink()
    with pytest.raises(SystemExit, match="task ue"):
        example("schedule_replay.py")([str(tmp_path)])
