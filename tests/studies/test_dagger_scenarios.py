"""DAgger rounds concentrated on some scenarios (`DaggerSpec.scenarios`): the rollouts of a round cover
exactly those, with the round's usual seeds, and a name outside the study is refused."""

import pytest
import torch

from studies.config import DaggerSpec, load_study_config
from studies.progress import StatusWriter

# The reference profile without its extra intersection rollouts: one collection per round.
NO_EXTRA = {"extra_scenarios": [], "extra_episodes": 0}


def test_scenarios_of_defaults_to_the_studys_scenarios():
    assert DaggerSpec().scenarios_of(["highway", "merge"]) == ["highway", "merge"]
    assert DaggerSpec(scenarios=["merge"]).scenarios_of(["highway", "merge"]) == ["merge"]


@pytest.mark.parametrize(
    "scenarios, message",
    [
        (
            ["intersection"],
            r"DaggerSpec.scenarios: expected names from the study's scenarios \['highway'\], got \['intersection'\]",
        ),
        ([], r"DaggerSpec.scenarios: expected distinct scenario names, got \[\]"),
        (
            ["highway", "highway"],
            r"DaggerSpec.scenarios: expected distinct scenario names, got \['highway', 'highway'\]",
        ),
    ],
)
def test_bad_dagger_scenarios_are_refused(scenarios, message):
    with pytest.raises(ValueError, match=message):
        load_study_config("smoke", {"dagger": {"rounds": 1, "scenarios": scenarios}})


@pytest.mark.parametrize("scenarios", [None, ["intersection"]])
def test_a_round_rolls_out_the_chosen_scenarios_on_its_own_seeds(scenarios, tmp_path, monkeypatch):
    import training.dagger
    from studies import tasks

    seen = {}

    def fake_round(policy_dir, out_dir, collect, **kw):
        seen.update(collect=collect, round_index=kw["round_index"])
        return {"num_samples": 0, "episodes": []}

    monkeypatch.setattr(training.dagger, "collect_round", fake_round)
    over = {"episodes": 16, "scenarios": scenarios, **NO_EXTRA}
    config = load_study_config("reference", {"dagger": over})
    tasks._dagger(tmp_path, config, 0, 2, StatusWriter(tmp_path, "dagger:0:2", "dagger"))
    collect = seen["collect"]
    assert collect.scenarios == (scenarios or ["highway", "merge", "roundabout", "intersection"])
    # Round 2's seeds follow the 24 demonstrations and round 1's 16 episodes.
    assert (collect.episodes, collect.seed_start, seen["round_index"]) == (16, 24 + 16, 2)
    assert sorted(collect.scenario_overrides) == sorted(collect.scenarios)  # the study's density etc. there


@pytest.mark.parametrize(
    "dagger, message",
    [
        (
            {"extra_scenarios": ["highway"]},
            r"DaggerSpec.extra_episodes: expected > 0 exactly when extra_scenarios are named, got 0",
        ),
        (
            {"extra_episodes": 3},
            r"DaggerSpec.extra_episodes: expected > 0 exactly when extra_scenarios are named, got 3",
        ),
        (
            {"extra_scenarios": ["intersection"], "extra_episodes": 2},
            r"DaggerSpec.extra_scenarios: expected names from the study's scenarios",
        ),
    ],
)
def test_bad_extra_rollouts_are_refused(dagger, message):
    with pytest.raises(ValueError, match=message):
        load_study_config("smoke", {"dagger": {"rounds": 1, **dagger}})


def _complete_index(path, samples):
    import json

    path.mkdir(parents=True, exist_ok=True)
    episodes = [{"outcome": "completed", "samples": samples}]
    (path / "index.json").write_text(
        json.dumps({"complete": True, "episodes": episodes, "num_samples": samples})
    )


def test_extra_rollouts_get_their_own_seeds_folder_and_count_in_the_round(tmp_path, monkeypatch):
    import json

    import training.dagger
    from studies import tasks

    calls = []

    def fake_round(policy_dir, out_dir, collect, **kw):
        calls.append((out_dir, collect))
        samples = 10 if collect.scenarios == ["intersection"] else 7
        return {"num_samples": samples, "episodes": [{"outcome": "collision"}] * collect.episodes}

    monkeypatch.setattr(training.dagger, "collect_round", fake_round)
    over = {"dagger": {"episodes": 4, "extra_scenarios": ["intersection"], "extra_episodes": 12}}
    config = load_study_config("reference", over)
    task = next(t for t in tasks.plan_tasks(config) if t.id == "dagger:1:2")
    assert task.params == {"seed": 1, "round_index": 2, "extra": True}
    threads = torch.get_num_threads()
    try:  # as a worker runs it: the task's params as arguments
        tasks.run_task(tmp_path, config.to_dict(), task.id)
    finally:
        torch.set_num_threads(threads)  # run_task sets the worker's thread count
    (regular_dir, regular), (extra_dir, extra) = calls
    assert regular.scenarios == ["highway", "merge", "roundabout", "intersection"]
    assert (regular.episodes, regular.seed_start) == (4, 24 + 4)
    # After the 24 demonstrations and both rounds' 4 regular seeds, round 2's 12 extra seeds.
    assert (extra.scenarios, extra.episodes, extra.seed_start) == (["intersection"], 12, 24 + 2 * 4 + 12)
    assert extra_dir == tasks.dagger_extra_dir(tmp_path, 1, 2) != regular_dir
    record = json.loads((tasks.dagger_data_dir(tmp_path, 1, 2).parent / "r2.json").read_text())
    assert (record["samples"], record["episodes"], record["outcomes"]["collision"]) == (17, 16, 16)
    # The round is done only when both collections are; training reads both.
    _complete_index(tasks.dagger_data_dir(tmp_path, 1, 2), 7)
    assert not tasks.is_done(tmp_path, task)
    _complete_index(extra_dir, 10)
    assert tasks.is_done(tmp_path, task)
    assert tasks.train_dirs(tmp_path, 1, 2, extra=True) == [
        str(tmp_path / "data" / "train"),
        str(tasks.dagger_data_dir(tmp_path, 1, 1)),
        str(tasks.dagger_extra_dir(tmp_path, 1, 1)),
        str(tasks.dagger_data_dir(tmp_path, 1, 2)),
        str(extra_dir),
    ]
    plain_config = load_study_config("reference", {"dagger": NO_EXTRA})
    plain = next(t for t in tasks.plan_tasks(plain_config) if t.kind == "dagger")
    assert "extra" not in plain.params  # studies without extras keep their task parameters
