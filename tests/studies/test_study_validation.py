"""Closed-loop validation in a study (`StudyConfig.validation`): which trainings it watches, what it
drives, and where its evaluations land."""

import json
import shutil

import pytest

from studies import tasks
from studies.config import load_study_config
from studies.progress import StatusWriter


def test_the_ae_is_validated_by_default_and_the_refiner_only_when_asked():
    config = load_study_config("smoke", {"validation": {"every_n_steps": 10}})
    assert config.validation.stages == ["ae"]
    assert tasks._validation(config, "ae", "ae.val.json") is not None
    assert tasks._validation(config, "refiner", "r.val.json") is None
    off = load_study_config("smoke", {"validation": {"stages": ["ae", "refiner"]}})  # every_n_steps 0: off
    assert tasks._validation(off, "ae", "a") is None and tasks._validation(off, "refiner", "r") is None
    both = load_study_config(
        "smoke",
        {
            "validation": {"every_n_steps": 10, "episodes": 2, "stages": ["refiner", "ae"]},
            "data": {
                "turn_signals": True,
                "image_size": 32,
                "scenarios": ["highway", "merge"],
                "duration_s": 10.0,
            },
        },
    )
    callback = tasks._validation(both, "refiner", "r.val.json")
    c = callback.config
    # It drives what the study's evaluation drives: the same scenarios, overrides, sensors and refresh.
    assert (c.every_n_steps, c.episodes, c.select) == (10, 2, True)
    assert c.scenarios == ["highway", "merge"] and c.image_size == 32 and c.turn_signals is True
    assert c.scenario_overrides == tasks.scenario_overrides(both)
    assert c.refresh_every == both.eval.refresh_every and c.history_path == "r.val.json"


@pytest.mark.parametrize(
    "stages, message",
    [
        ([], r"ValidationSpec.stages: expected a non-empty list of names from \['ae', 'refiner'\], got \[\]"),
        (
            ["ae", 3],
            r"ValidationSpec.stages: expected a list of strings, got \['ae', 3\] \(list\)",
        ),
        ("ae", r"ValidationSpec.stages: expected a list of strings, got 'ae' \(str\)"),
        (["ue"], r"ValidationSpec.stages: expected one of \['ae', 'refiner'\], got 'ue'"),
        (["ae", "ae"], r"ValidationSpec.stages: expected each name once, got \['ae', 'ae'\]"),
    ],
)
def test_bad_validation_stages_are_refused(stages, message):
    with pytest.raises(ValueError, match=message):
        load_study_config("smoke", {"validation": {"every_n_steps": 10, "stages": stages}})


def test_a_validated_refiner_task_exports_its_selected_weights_and_records_them(smoke, tmp_path):
    """The refine task of a study that validates its refiner: the history file and the round record
    hold every evaluation, and the exported policy is the best evaluation's."""
    import torch

    study = tmp_path / "s"
    study.mkdir()
    for part in ("study.json", "data", "ue", "seeds"):
        src = smoke[0].study_dir / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, study / part)
    config = load_study_config(
        "smoke",
        {"validation": {"every_n_steps": 10, "stages": ["refiner"]}, "refiner_dagger": {"rounds": 1}},
    )
    tasks._refine(
        study, config, 0, "diffusion", StatusWriter(study, "refine:0:diffusion", "refine"), round_index=0
    )
    record = json.loads(tasks.refiner_record_path(study, 0, "diffusion", 0).read_text())
    history = json.loads(
        tasks.refiner_record_path(study, 0, "diffusion", 0).with_suffix(".val.json").read_text()
    )
    steps = [h["step"] for h in record["validation"]["history"]]
    assert steps == [10, 20] and history["history"] == record["validation"]["history"]
    best = record["validation"]["best"]
    assert best["ds"] == max(h["ds"] for h in history["history"])
    assert history["config"]["scenarios"] == ["highway"] and history["config"]["episodes"] == 1
    # The weights exported for round 0 are those of the best evaluation: the validation re-run on them
    # gives its DS (the callback's driving is deterministic given the weights and sampling seed 0).
    from training.callbacks import ClosedLoopValConfig, drive_validation
    from training.policy import load_pretrained

    exported = tasks.refiner_round_dir(study, config, 0, "diffusion", 0)
    backbone = load_pretrained(exported)
    with torch.no_grad():
        again = drive_validation(backbone, ClosedLoopValConfig(**history["config"]))
    assert again["ds"] == pytest.approx(best["ds"], abs=1e-9)


def test_a_validation_spec_built_in_python_checks_its_stages_too():
    from studies.config import ValidationSpec

    assert ValidationSpec(stages=("refiner",)).stages == ["refiner"]
    with pytest.raises(
        ValueError, match=r"ValidationSpec.stages: expected a list of names from .* got \('ae', 3\)"
    ):
        ValidationSpec(stages=("ae", 3))
    with pytest.raises(ValueError, match=r"ValidationSpec.stages: expected a list of names from .* got 'ae'"):
        ValidationSpec(stages="ae")
