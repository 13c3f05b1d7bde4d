"""The latent-action study end to end (profile `latent_smoke`): every task runs, the summary and the
report hold the LAM's quality, the data-efficiency comparison and the student against its teacher,
the fine-tuning arms saw the same labeled episodes, and a rerun finds everything done."""

import json

import pytest

from automot.io import read_jsonl
from latent.data import select_episodes
from studies.config import load_study_config
from studies.latent import finetuned_dir, student_dir
from studies.runner import run_study


@pytest.fixture(scope="module")
def latent_study(tmp_path_factory):
    study = tmp_path_factory.mktemp("latent_study")
    result = run_study(study, load_study_config("latent_smoke"), workers=2, progress=None)
    return result, read_jsonl(study / "runs.jsonl")


def test_every_arm_ran_and_the_summary_has_the_three_tables(latent_study):
    result, runs = latent_study
    s = result.summary
    assert s["complete"] and s["n_runs"] == len(runs) == 2 * 2 + 1 + 1
    assert set(s["arms"]) == {
        "pretrained@50",
        "scratch@50",
        "pretrained@100",
        "scratch@100",
        "student",
        "constant_velocity",
    }
    ds = [r["closed_loop"]["ds"] for r in runs if r["head"] == "pretrained@100"]
    assert s["arms"]["pretrained@100"]["metrics"]["ds"]["mean"] == pytest.approx(sum(ds) / len(ds))
    q = s["lam_quality"]
    assert q["codebook"]["usage"] > 0 and set(q["probe"]) == {"lateral", "longitudinal", "joint"}
    assert q["copy_mse"] > 0 and q["recon_mse"] > 0
    assert (
        set(s["data_efficiency"]) == {"50", "100"} and "paired_ratio" in s["data_efficiency"]["50"]["l2_avg"]
    )
    student = s["student"]
    assert student["teacher"] == "pretrained@100" and student["student_ms"]["mean"] > 0
    # Wall and CPU latencies are both summarised from the student's run (the report has a row for each).
    (latency,) = [r["latency"] for r in runs if r["head"] == "student"]
    for name in ("student_over_teacher_ae", "student_cpu_ms", "student_over_teacher_ae_cpu"):
        assert student[name]["mean"] == pytest.approx(latency[name])
    assert student["parameters"]["student"] < student["parameters"]["teacher_ae"]
    report = result.report_path.read_text()
    for heading in (
        "## Latent action model",
        "## Data efficiency",
        "## Distilled student vs its teacher",
        "## Every run",
    ):
        assert heading in report
    assert f"| CPU | {student['student_cpu_ms']['mean']:.2f} |" in report
    assert (result.study_dir / "data_efficiency.png").stat().st_size > 5000


def test_the_student_folder_has_no_ue_and_both_arms_saw_the_same_labels(latent_study):
    result, _ = latent_study
    study = result.study_dir
    folder = student_dir(study, 0)
    assert (folder / "student_config.json").exists() and not (folder / "mot_config.json").exists()
    for f in (0.5, 1.0):
        assert (finetuned_dir(study, 0, "pretrained", f) / "latent_head.json").exists()
        assert not (finetuned_dir(study, 0, "scratch", f) / "latent_head.json").exists()
    # The study's MLP head config (not the preset's) is both arms' planning head.
    for arm in ("pretrained", "scratch"):
        saved = json.loads((finetuned_dir(study, 0, arm, 0.5) / "mot_config.json").read_text())
        assert saved["config"]["head_kwargs"]["hidden_dim"] == 32
    # the pretraining, fine-tuning and distillation tasks shared the frozen UE's caches on disk
    (fingerprint,) = (study / "work" / "ue_store").iterdir()
    assert len(list(fingerprint.glob("*.safetensors"))) > 0
    entries = json.loads((study / "data" / "train" / "index.json").read_text())["episodes"]
    half = select_episodes(entries, 0.5, 0)
    assert len(half) == 1 and half == select_episodes(entries, 0.5, 0)


def test_a_rerun_finds_every_task_done_and_writes_the_same_summary(latent_study):
    result, _ = latent_study
    before = result.summary_path.read_bytes()
    again = run_study(result.study_dir, load_study_config("latent_smoke"), workers=1, progress=None)
    assert again.summary_path.read_bytes() == before


def test_lam_checkpoint_example_scores_the_last_checkpoint_like_the_study(latent_study, tmp_path):
    """examples/lam_checkpoint_quality.py on the LAM's last Lightning checkpoint (its final weights)
    reproduces the study's own LAM quality numbers on the same splits."""
    import runpy
    from pathlib import Path

    result, _ = latent_study
    study = result.study_dir
    main = runpy.run_path(
        str(Path(__file__).resolve().parents[2] / "examples" / "lam_checkpoint_quality.py")
    )["main"]
    out = tmp_path / "quality.json"
    argv = [
        str(study),
        "--ckpt",
        str(study / "work" / "lam" / "last.ckpt"),
        "--probe-train",
        "train",
        "--eval",
        "test",
    ]
    got = main([*argv, "--out", str(out)])
    assert out.exists() and got["recon_over_copy"] == pytest.approx(got["recon_mse"] / got["copy_mse"])
    own = json.loads(next(study.rglob("lam_quality.json")).read_text())
    assert got["recon_mse"] == pytest.approx(own["recon_mse"], rel=1e-5)
    assert got["codebook"] == pytest.approx(own["codebook"], rel=1e-5)


def test_lam_motion_probe_example_on_a_finished_study(latent_study):
    """examples/lam_motion_probe.py: its targets by hand on two transitions, and its probes on the
    smoke study's LAM (every transition of both splits read, R^2 at most 1)."""
    import math
    import runpy
    from pathlib import Path

    import torch

    from latent.data import TransitionDataset

    module = runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "lam_motion_probe.py"))
    t = {"now": torch.tensor([10.0, 4.0]).double(), "later": torch.tensor([12.0, 4.0]).double(),
         "scenarios": ["highway", "merge"]}  # fmt: skip
    y = module["targets"](t, 0.5)
    assert y["distance_m"].tolist() == [5.5, 2.0] and y["speed_change"].tolist() == [2.0, 0.0]
    assert y["stripe_phase"][0].tolist() == pytest.approx(
        [math.cos(2 * math.pi * 5.5 / 4.33), math.sin(2 * math.pi * 5.5 / 4.33)]
    )
    assert y["distance_m_within_scenario"].tolist() == [0.0, 0.0]  # one transition per scenario
    result, _ = latent_study
    study = result.study_dir
    got = module["main"]([str(study), "--fit", "train", "--eval", "test"])
    lengths = [
        len(TransitionDataset(study / "data" / s, offsets_s=(1.0,), sensors=False)) for s in ("train", "test")
    ]
    assert got["transitions"] == lengths
    assert set(got["r2"]) == {"distance_m", "speed_now", "speed_change", "stripe_phase",
                              "distance_m_within_scenario", "speed_change_within_scenario"}  # fmt: skip
    assert all(r <= 1.0 for r in got["r2"].values())


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "finetune_latent_weight",
            -0.5,
            r"LatentSpec.finetune_latent_weight: expected a value >= 0, got -0.5",
        ),
        (
            "finetune_pretrained_lr_scale",
            0.0,
            r"LatentSpec.finetune_pretrained_lr_scale: expected a value > 0, got 0.0",
        ),
        (
            "pretrain_hidden",
            ["ego", "speed"],
            r"LatentSpec.pretrain_hidden: expected one of \['rgb', .*'ego'.*\], got 'speed'",
        ),
        (
            "pretrain_hidden",
            "ego",
            r"LatentSpec.pretrain_hidden: expected a list of strings, got 'ego' \(str\)",
        ),
    ],
)
def test_latent_spec_refuses_bad_fine_tuning_options(field, value, message):
    with pytest.raises(ValueError, match=message):
        load_study_config("latent_smoke", {"latent": {field: value}})


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"heads": [{"name": "mlp"}, {"name": "diffusion"}]},
            r"StudyConfig.heads: a latent study trains the AE's MLP head only: expected one head named "
            r"'mlp', got \['mlp', 'diffusion'\]",
        ),
        ({"dagger": {"rounds": 1}}, r"StudyConfig.dagger.rounds: a latent study does not run .* got 1"),
        (
            {"validation": {"every_n_steps": 10}},
            r"StudyConfig.validation.every_n_steps: a latent study does not run .* got 10",
        ),
        ({"augment": {"state_dropout": 0.3}}, r"StudyConfig.augment: a latent study does not run"),
        ({"refiner": {"steps": 5}}, r"StudyConfig.refiner: a latent study does not run"),
        ({"keyframe_weight": 2.0}, r"StudyConfig.keyframe_weight: a latent study does not run .* got 2.0"),
        (
            {"refiner_augment": {"history_dropout": 0.5}},
            r"StudyConfig.refiner_augment: a latent study does not run",
        ),
        (
            {"refiner_keyframe_weight": 1.0},
            r"StudyConfig.refiner_keyframe_weight: a latent study does not run",
        ),
    ],
)
def test_a_latent_study_refuses_what_only_the_head_study_reads(override, message):
    load_study_config("latent_smoke")  # the profile itself passes
    with pytest.raises(ValueError, match=message):
        load_study_config("latent_smoke", override)


def test_a_latent_study_whose_lam_reads_the_speedometer(tmp_path):
    """`lam: {odometry: true}`: the study's LAM, its quality, the pretraining and the fine-tuning all
    read the ego speeds (each stage refuses batches without them), and the report says so."""
    from latent.lam import load_lam
    from studies.latent import lam_dir

    config = load_study_config(
        "latent_smoke", {"latent": {"lam": {"odometry": True}, "label_fractions": [1.0]}}
    )
    result = run_study(tmp_path, config, workers=1, progress=None)
    assert result.summary["complete"]
    assert load_lam(lam_dir(tmp_path)).config.odometry
    change = result.summary["lam_quality"]["speed_change"]
    assert change["rmse"] > 0 and change["zero_rmse"] > 0
    assert (
        f"RMSE {change['rmse']:.3f} m/s vs no change {change['zero_rmse']:.3f} m/s"
        in result.report_path.read_text()
    )
    heads = {r["head"] for r in read_jsonl(tmp_path / "runs.jsonl")}
    assert {"pretrained@100", "scratch@100", "student"} <= heads
