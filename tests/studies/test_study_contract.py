"""What a study promises beyond its numbers: a plug-in head is trained, evaluated and compared through
the CLI, outputs are readable by the team (umask 022), a resumed study with another config names the
differing fields, and `--force` keeps the finished data while moving (never deleting) the rest."""

import json
import shutil
import stat

import pytest
import yaml

from automot.cli import main
from studies.config import load_study_config
from studies.runner import prepare_study

MODULE = "examples.cv_residual_head"


def test_a_plugin_head_is_trained_evaluated_and_compared_in_a_study(smoke, tmp_path, capsys):
    result, runs = smoke
    study = tmp_path / "plugin_study"
    for part in ("data", "ue", "seeds/0/policy_mlp"):  # reuse the finished tasks of the smoke study
        shutil.copytree(result.study_dir / part, study / part)
    config = tmp_path / "plugin.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "profile": "smoke",
                "heads": [{"name": "mlp"}, {"name": "cv_residual", "kwargs": {"hidden_dim": 32}}],
                "training_seeds": [0],
                "sampling_seeds": [0],
                "baselines": ["constant_velocity"],
            }
        )
    )
    argv = [
        "study",
        "--import",
        MODULE,
        "--config",
        str(config),
        "--out",
        str(study),
        "--workers",
        "2",
        "--json",
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["headline"]) == {"mlp", "cv_residual", "constant_velocity"}
    summary = json.loads((study / "summary.json").read_text())
    assert summary["complete"] and "cv_residual_vs_mlp" in summary["comparisons"]
    report = (study / "report.md").read_text()
    assert "| cv_residual |" in report and "| cv_residual__t0__s0 |" in report
    assert (study / "trajectories.png").stat().st_size > 5000  # plotted with only what the head declares
    meta = json.loads((study / "seeds/0/policy_cv_residual/mot_config.json").read_text())
    assert meta["head"]["module"] == MODULE and meta["config"]["head_kwargs"]["hidden_dim"] == 32
    # The MLP run is the smoke study's own (same policy, same seeds): the comparison is like for like.
    old = {r["run_id"]: r for r in runs}["mlp__t0__s0"]
    new = json.loads((study / "runs" / "mlp__t0__s0.json").read_text())
    assert new["closed_loop"]["episode_scores"] == old["closed_loop"]["episode_scores"]


def test_study_outputs_are_readable_by_group_and_others(smoke):
    study = smoke[0].study_dir
    files = [
        study / "study.json",
        study / "summary.json",
        study / "report.md",
        study / "runs.jsonl",
        study / "data/train/index.json",
        *list((study / "data/train/shards").glob("*.npz"))[:2],
        *list((study / "runs").glob("*.json"))[:2],
        study / "seeds/0/policy_mlp/action_expert.safetensors",
        study / "seeds/0/policy_mlp/mot_config.json",
        study / "ue/config.json",
    ]
    folders = [study / "data/train", study / "seeds/0/policy_mlp", study / "ue", study / "runs"]
    for path in files + folders:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, f"{path} is {oct(mode)}"
    for path in folders:
        assert stat.S_IMODE(path.stat().st_mode) & 0o011 == 0o011, path


def _copy_study(smoke, dest):
    for part in ("study.json", "data", "ue", "seeds", "runs", "runs.jsonl", "summary.json"):
        src = smoke[0].study_dir / part
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / part)


def test_a_resume_with_another_config_names_the_fields_and_force_keeps_the_data(smoke, tmp_path):
    study = tmp_path / "s"
    study.mkdir()
    _copy_study(smoke, study)
    rollouts = study / "data" / "dagger" / "0" / "r1"  # as a study with DAgger rounds has them
    rollouts.mkdir(parents=True)
    (rollouts / "index.json").write_text('{"complete": true}')
    other = load_study_config("smoke", {"ae": {"steps": 40}, "heads": [{"name": "mlp"}]})
    with pytest.raises(ValueError, match=r"these fields differ: ae.steps: 30 -> 40; heads: .*--force") as err:
        prepare_study(study, other)
    assert "refiner.steps" not in str(err.value)
    before = {p: p.read_bytes() for p in (study / "data").rglob("*") if p.is_file()}
    prepare_study(study, other, force=True)
    demos = {p: b for p, b in before.items() if "dagger" not in p.parts}
    assert {p: p.read_bytes() for p in (study / "data").rglob("*") if p.is_file()} == demos  # data kept
    # ... but not the old policies' rollouts: they moved with the policies (and were not deleted)
    assert (study / "superseded/0/data/dagger/0/r1/index.json").exists() and not (
        study / "data/dagger"
    ).exists()
    assert (study / "ue" / "config.json").exists()  # the UE's own settings did not change: kept
    moved = study / "superseded" / "0"
    assert (moved / "seeds/0/policy_mlp/mot_config.json").exists() and not (study / "seeds").exists()
    assert (moved / "runs.jsonl").exists() and not (study / "runs.jsonl").exists()
    assert json.loads((study / "study.json").read_text())["ae"]["steps"] == 40
    prepare_study(study, other)  # now it resumes without complaint


def test_a_study_with_an_unknown_head_fails_before_any_task(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"profile": "smoke", "heads": [{"name": "mlp"}, {"name": "difusion"}]}))
    assert main(["study", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "heads[1].name" in err and "unknown planning head 'difusion'" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing collected, nothing written


@pytest.mark.parametrize(
    "heads",
    [
        [{"name": "mlp", "label": "mlp_big"}, {"name": "diffusion"}],  # the AE stage trains it as 'mlp'
        [{"name": "diffusion", "label": "mlp"}, {"name": "mlp", "label": "m"}],
    ],
)
def test_a_study_needs_the_mlp_head_under_its_own_name(heads):
    with pytest.raises(
        ValueError, match=r"StudyConfig.heads: expected a head named 'mlp' under its own name"
    ):
        load_study_config("smoke", {"heads": heads})


def test_a_study_started_before_a_config_field_existed_resumes(tmp_path):
    """A study.json without fields added since (here the DAgger and latent fine-tuning options) is the
    same study when those fields are at their defaults; one of them changed is still a difference."""
    config = load_study_config("smoke")
    old = config.to_dict()
    for name in ("scenarios", "extra_scenarios", "extra_episodes"):
        del old["dagger"][name]
    study = tmp_path / "s"
    study.mkdir()
    (study / "study.json").write_text(json.dumps(old))
    prepare_study(study, config)
    assert json.loads((study / "study.json").read_text()) == old  # left as it was
    changed = load_study_config("smoke", {"dagger": {"scenarios": ["highway"]}})
    with pytest.raises(ValueError, match=r"these fields differ: dagger.scenarios: None -> \['highway'\]"):
        prepare_study(study, changed)


def test_the_study_expert_drives_labels_and_scores(tmp_path, monkeypatch):
    """`StudyConfig.expert` reaches the demonstrations, the DAgger relabelling and the expert baseline;
    a latent study, which collects on its own, refuses it."""
    import importlib

    from studies import tasks

    with pytest.raises(ValueError, match="other_routes"):
        load_study_config("smoke", {"expert": {"other_routes": "all"}})
    with pytest.raises(ValueError, match=r"StudyConfig.expert: a latent study does not run"):
        load_study_config("latent_smoke", {"expert": {"other_routes": "any"}})
    config = load_study_config("smoke", {"expert": {"other_routes": "any"}, "dagger": {"rounds": 1}})
    seen = {}
    collect_module = importlib.import_module("driving.collect")  # `driving.collect` is also a function
    monkeypatch.setattr(collect_module, "collect", lambda c, *a, **k: seen.update(collect=c))
    monkeypatch.setattr(
        "training.dagger.collect_round",
        lambda policy, out, c, **k: seen.update(dagger=c) or {"episodes": [], "num_samples": 0},
    )
    monkeypatch.setattr(
        tasks, "_closed_loop", lambda s, c, policy, *a, **k: seen.update(baseline=policy) or {}
    )
    status = tasks.StatusWriter(tmp_path, "t", "t")
    tasks._collect(tmp_path, config, "val", status)
    tasks._dagger(tmp_path, config, 0, 1, status)
    tasks._baseline(tmp_path, config, "expert", "expert", status)
    assert seen["collect"].expert_config().other_routes == "any"
    assert seen["dagger"].expert_config().other_routes == "any"
    assert seen["baseline"].config.other_routes == "any"


def _files(study, parts=("data", "ue", "seeds", "runs")):
    return {p: p.read_bytes() for part in parts for p in (study / part).rglob("*") if p.is_file()}


def test_a_study_grown_by_seeds_keeps_every_finished_task(smoke, tmp_path):
    """Seeds appended to a finished study's lists: its finished tasks keep their outputs (each depends
    on the config and its own seeds), only the new seeds' tasks are pending, and the worst-episode
    strips, drawn over all runs, move aside to be drawn again."""
    from studies.tasks import is_done, plan_tasks

    study = tmp_path / "s"
    study.mkdir()
    _copy_study(smoke, study)
    shutil.copytree(smoke[0].study_dir / "failures", study / "failures")
    old = json.loads((study / "study.json").read_text())
    before = _files(study)
    grown = load_study_config("smoke", {"training_seeds": [0, 1, 2], "sampling_seeds": [0, 1, 2]})
    prepare_study(study, grown)
    assert json.loads((study / "study.json").read_text()) == json.loads(json.dumps(grown.to_dict()))
    assert _files(study) == before  # nothing finished was touched
    moved = study / "superseded" / "0"
    assert json.loads((moved / "study.json").read_text()) == old
    assert (moved / "failures" / "mlp.json").exists() and not (study / "failures").exists()
    pending = {t.id for t in plan_tasks(grown) if not is_done(study, t)}
    new_seed = {"ae:2", "refine:2:diffusion", "eval:mlp:2:0", *(f"eval:diffusion:2:{s}" for s in (0, 1, 2))}
    new_sampling = {"eval:diffusion:0:2", "eval:diffusion:1:2"}  # the MLP head runs under seed 0 only
    assert pending == new_seed | new_sampling | {"failures:mlp", "failures:diffusion"}
    prepare_study(study, grown)  # and now it is this study


@pytest.mark.parametrize(
    "over",
    [
        {"training_seeds": [1, 0, 2]},  # reordered: not a prefix
        {"training_seeds": [0]},  # a seed removed
        {"training_seeds": [0, 1, 2], "ae": {"steps": 40}},  # grown, and something else changed
        {"sampling_seeds": [1, 0]},  # the deterministic head would run under another seed
    ],
)
def test_only_appended_seeds_grow_a_study(smoke, tmp_path, over):
    study = tmp_path / "s"
    study.mkdir()
    (study / "study.json").write_text((smoke[0].study_dir / "study.json").read_text())
    with pytest.raises(ValueError, match=r"these fields differ: .*--force"):
        prepare_study(study, load_study_config("smoke", over))
    assert not (study / "superseded").exists()


def test_force_moves_the_worst_episode_strips_with_the_runs(smoke, tmp_path):
    study = tmp_path / "s"
    study.mkdir()
    _copy_study(smoke, study)
    shutil.copytree(smoke[0].study_dir / "failures", study / "failures")
    prepare_study(study, load_study_config("smoke", {"ae": {"steps": 40}}), force=True)
    assert (study / "superseded/0/failures/mlp.json").exists() and not (study / "failures").exists()
