"""DAgger rounds concentrated on some scenarios (`DaggerSpec.scenarios`): the rollouts of a round cover
exactly those, with the round's usual seeds, and a name outside the study is refused."""

import pytest

from studies.config import DaggerSpec, load_study_config
from studies.progress import StatusWriter


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
    config = load_study_config("reference", {"dagger": {"episodes": 16, "scenarios": scenarios}})
    tasks._dagger(tmp_path, config, 0, 2, StatusWriter(tmp_path, "dagger:0:2", "dagger"))
    collect = seen["collect"]
    assert collect.scenarios == (scenarios or ["highway", "merge", "roundabout", "intersection"])
    # Round 2's seeds follow the 24 demonstrations and round 1's 16 episodes.
    assert (collect.episodes, collect.seed_start, seen["round_index"]) == (16, 24 + 16, 2)
    assert sorted(collect.scenario_overrides) == sorted(collect.scenarios)  # the study's density etc. there
