"""DAgger for the refining heads in a study (`StudyConfig.refiner_dagger`): the task chain, the rollout
seeds and noise salt (after every seed the AE's rounds used), the training folders of each round and
what the config refuses. The whole chain on a real (smoke) study is in tests/studies/test_study.py."""

import json

import pytest
import torch

from studies.config import load_study_config

ROLLOUTS = {"episodes": 4, "extra_scenarios": ["intersection"], "extra_episodes": 12}


def _tasks(config):
    from studies.tasks import plan_tasks

    return {t.id: t for t in plan_tasks(config)}


def test_each_round_rolls_out_the_previous_refiner_and_the_study_evaluates_the_last():
    config = load_study_config("reference", {"refiner_dagger": {"rounds": 2, **ROLLOUTS}})
    tasks = _tasks(config)
    assert tasks["refine:0:diffusion"].deps == ("ae:0:r2",)  # around the AE's final round
    assert tasks["rdagger:0:diffusion:1"].deps == ("refine:0:diffusion",)
    assert tasks["refine:0:diffusion:r1"].deps == ("rdagger:0:diffusion:1",)
    assert tasks["rdagger:0:diffusion:2"].deps == ("refine:0:diffusion:r1",)
    assert tasks["rdagger:1:diffusion:2"].params == {
        "seed": 1,
        "head": "diffusion",
        "round_index": 2,
        "extra": True,
    }
    for sampling in (0, 1):
        assert tasks[f"eval:diffusion:1:{sampling}"].deps == ("refine:1:diffusion:r2", "collect:test")
    assert tasks["eval:mlp:1:0"].deps == ("ae:1:r2", "collect:test")  # the MLP head is not refined
    assert not [t for t in tasks if t.startswith("rdagger:") and ":mlp:" in t]
    # Without rounds the refine task keeps the parameters (and outputs) of studies before the option.
    plain = _tasks(load_study_config("reference", {"refiner_dagger": {"rounds": 0}}))
    assert plain["refine:0:diffusion"].params == {"seed": 0, "head": "diffusion"}
    assert not [
        t for t in plain if t.startswith("rdagger:") or (t.endswith(":r1") and t.startswith("refine"))
    ]


def test_the_rounds_folders_the_last_is_the_studys_policy(tmp_path):
    from studies import tasks

    config = load_study_config("reference", {"refiner_dagger": {"rounds": 2, **ROLLOUTS}})
    seeds = tmp_path / "seeds" / "1"
    assert tasks.refiner_round_dir(tmp_path, config, 1, "diffusion", 2) == seeds / "policy_diffusion"
    assert tasks.refiner_round_dir(tmp_path, config, 1, "diffusion", 0) == (
        seeds / "refiner_rounds" / "diffusion" / "0" / "policy_diffusion"
    )
    data = tmp_path / "data" / "refiner_dagger" / "1" / "diffusion"
    # Round 2 trains on the AE's final data (demonstrations + its two rounds with extras) and both rounds.
    assert tasks.refiner_train_dirs(tmp_path, config, 1, "diffusion", 2) == [
        *tasks.train_dirs(tmp_path, 1, 2, extra=True),
        str(data / "r1"),
        str(data / "r1_extra"),
        str(data / "r2"),
        str(data / "r2_extra"),
    ]
    assert tasks.refiner_train_dirs(tmp_path, config, 1, "diffusion", 0) == tasks.train_dirs(
        tmp_path, 1, 2, extra=True
    )


def _complete_index(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "index.json").write_text(json.dumps({"complete": True, "episodes": [], "num_samples": 0}))


def test_rollouts_take_fresh_seeds_after_the_ae_rounds_and_count_in_the_record(tmp_path, monkeypatch):
    import training.dagger
    from studies import tasks

    calls = []

    def fake_round(policy_dir, out_dir, collect, **kw):
        calls.append({"policy": policy_dir, "out": out_dir, "collect": collect, **kw})
        samples = 10 if collect.scenarios == ["intersection"] else 7
        return {"num_samples": samples, "episodes": [{"outcome": "timeout"}] * collect.episodes}

    monkeypatch.setattr(training.dagger, "collect_round", fake_round)
    over = {"refiner_dagger": {"rounds": 2, "beta": 0.25, **ROLLOUTS}}
    config = load_study_config("reference", over)
    task = _tasks(config)["rdagger:1:diffusion:2"]
    threads = torch.get_num_threads()
    try:  # as a worker runs it: the task's params as arguments
        tasks.run_task(tmp_path, config.to_dict(), task.id)
    finally:
        torch.set_num_threads(threads)
    regular, extra = calls
    # The demonstrations take seeds 0-23, the AE's two rounds 24-55 (4 + 12 per round); the refiner's
    # round 1 takes 56-71 (regular 56-59, extra 60-71), so round 2 starts at 72.
    assert (regular["collect"].seed_start, regular["collect"].episodes) == (72, 4)
    assert regular["collect"].scenarios == ["highway", "merge", "roundabout", "intersection"]
    assert (extra["collect"].scenarios, extra["collect"].seed_start, extra["collect"].episodes) == (
        ["intersection"],
        76,
        12,
    )
    for call in calls:
        assert call["policy"] == tasks.refiner_round_dir(tmp_path, config, 1, "diffusion", 1)
        # the noise salt continues the AE's round numbering: its 2 rounds, then this one's second
        assert (call["round_index"], call["beta"]) == (4, 0.25)
        assert (call["noise"].acceleration_std, call["noise"].lateral_accel_std) == (0.5, 0.5)
    assert regular["out"] == tasks.refiner_dagger_dir(tmp_path, 1, "diffusion", 2)
    assert extra["out"] == tasks.refiner_dagger_dir(tmp_path, 1, "diffusion", 2, extra=True)
    record = json.loads(tasks.refiner_rollouts_path(tmp_path, 1, "diffusion", 2).read_text())
    assert (record["samples"], record["episodes"], record["outcomes"]["timeout"]) == (17, 16, 16)
    # Done only when both collections are complete (and the record above exists).
    assert not tasks.is_done(tmp_path, task)
    _complete_index(tasks.refiner_dagger_dir(tmp_path, 1, "diffusion", 2))
    assert not tasks.is_done(tmp_path, task)
    _complete_index(tasks.refiner_dagger_dir(tmp_path, 1, "diffusion", 2, extra=True))
    assert tasks.is_done(tmp_path, task)


@pytest.mark.parametrize(
    "over, message",
    [
        (
            {"refiner_dagger": {"rounds": 1}, "heads": [{"name": "mlp"}]},
            r"StudyConfig.refiner_dagger.rounds: expected 0 in a study without a refining head",
        ),
        (
            {"refiner_dagger": {"rounds": 1, "extra_scenarios": ["intersection"], "extra_episodes": 2}},
            r"RefinerDaggerSpec.extra_scenarios: expected names from the study's scenarios \['highway'\]",
        ),
        (
            {"refiner_dagger": {"rounds": 1, "extra_scenarios": ["highway"]}},
            r"RefinerDaggerSpec.extra_episodes: expected > 0 exactly when extra_scenarios are named, got 0",
        ),
        ({"refiner_dagger": {"rounds": -1}}, r"RefinerDaggerSpec.rounds"),
        ({"refiner_dagger": {"beta": 1.5}}, r"RefinerDaggerSpec.beta: expected a value in \[0, 1\], got 1.5"),
        ({"refiner_dagger": {"episodes": 0}}, r"RefinerDaggerSpec.episodes"),
    ],
)
def test_bad_refiner_dagger_settings_are_refused(over, message):
    with pytest.raises(ValueError, match=message):
        load_study_config("smoke", over)


def test_a_latent_study_refuses_refiner_dagger_rounds():
    with pytest.raises(ValueError, match=r"StudyConfig.refiner_dagger.rounds: a latent study does not run"):
        load_study_config("latent_smoke", {"refiner_dagger": {"rounds": 1}})


def test_the_report_lists_each_rounds_rollouts(tmp_path):
    from studies import tasks
    from studies.report import format_refiner_dagger

    config = load_study_config("smoke", {"refiner_dagger": {"rounds": 1}})
    assert format_refiner_dagger(tmp_path, config) == []  # nothing finished yet
    for seed, collisions in ((0, 1), (1, 3)):
        path = tasks.refiner_record_path(tmp_path, seed, "diffusion", 1)
        path.parent.mkdir(parents=True)
        outcomes = {"completed": 4 - collisions, "collision": collisions, "offroad": 0, "timeout": 0}
        rollouts = {"collect_s": 10.0 * (seed + 1), "samples": 100, "episodes": 4, "outcomes": outcomes}
        validation = {"best": {"step": 20, "ds": 80.0 + 10 * seed}, "history": []}
        path.write_text(
            json.dumps({"round": 1, "train_s": 30.0, "dagger": rollouts, "validation": validation})
        )
    lines = format_refiner_dagger(tmp_path, config)
    assert lines[0] == "## Refiner DAgger rounds"
    assert "| diffusion | 1 | 85.0 | 4/4/0/0 | 200 | 15 | 30 |" in lines
