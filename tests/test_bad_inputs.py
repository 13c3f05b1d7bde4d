"""Every bad input is stopped at the boundary: one row per input, over the Python API, every CLI
subcommand, study configs, policy folders and data shards.

A row passes when the input gets a `ValueError` (API) or exit code 2 (CLI) whose message names the
field and says what was expected, in one line, with no traceback on stderr, and when no file under
the test's inputs (policy folders, datasets, user folders) was created, changed or removed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from automot.cli import main
from heads import ContextDims

MODULE = "examples.cv_residual_head"


@dataclass
class Row:
    id: str
    run: Any  # env -> None (API: must raise ValueError) or env -> list[str] (CLI argv)
    field: str
    cli: bool = False


def api(id, run, field):
    return Row(id, run, field)


def cli(id, argv, field):
    return Row(id, argv, field, cli=True)


# --------------------------------------------------------------------------------------------- inputs
@dataclass
class Env:
    root: Path
    data: Path  # a complete dataset root: train/ val/ test/
    policy: Path
    backbone: Any
    batch: Any  # a SensorBatch of 2 test samples
    ctx: Any  # an ActionContext of that batch
    fit_yaml: Path

    def p(self, name: str) -> str:
        return str(self.root / name)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.fixture(scope="module")
def env(tiny_dataset, tmp_path_factory):
    from driving.dataset import DrivingDataset, collate
    from mot.backbone import MoTBackbone
    from training.policy import load_pretrained, save_pretrained

    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "a_file.txt").write_text("not a folder")
    (root / "user_folder").mkdir()
    (root / "user_folder" / "notes.txt").write_text("precious")
    batch = collate([DrivingDataset(tiny_dataset / "test")[i] for i in (0, 1)]).sensors
    bb = MoTBackbone.build("tiny", seed=0)
    bb.ae.input_shapes = batch.shapes()
    policy = save_pretrained(bb.ae, root / "policy")
    _corrupt_copies(root, policy, tiny_dataset)
    torch.save({"state_dict": {}, "evil": _Evil()}, root / "malicious.ckpt")
    (root / "truncated.ckpt").write_bytes(b"PK\x03\x04 truncated")
    (root / "broken.yaml").write_text("heads: [mlp\ntraining_seeds: {0, 1\n")
    (root / "words.yaml").write_text(yaml.safe_dump({"profile": "smoke", "eval": {"episodes": "many"}}))
    (root / "noise.yaml").write_text(
        yaml.safe_dump(
            {
                "profile": "smoke",
                "heads": [{"name": "mlp"}, {"name": "diffusion", "kwargs": {"denoiser": {"noise": "pink"}}}],
            }
        )
    )
    fit = {
        "trainer": {"accelerator": "cpu", "max_steps": 1, "logger": False, "enable_checkpointing": False},
        "model": {
            "class_path": "training.stages.ActionExpertStage",
            "init_args": {
                "backbone": {"preset": "tiny", "ue_checkpoint": None},
                "export_dir": str(root / "new_policy"),
            },
        },
        "data": {
            "class_path": "driving.datamodule.DrivingDataModule",
            "init_args": {"train_dirs": str(tiny_dataset / "train")},
        },
    }
    (root / "fit.yaml").write_text(yaml.safe_dump(fit))
    backbone = load_pretrained(policy)
    with torch.no_grad():
        ctx = backbone.ae(batch, backbone.prefill(batch), with_plan=False).context
    return Env(root, tiny_dataset, policy, backbone, batch, ctx, root / "fit.yaml")


def _corrupt_copies(root: Path, policy: Path, data: Path) -> None:
    import json

    from safetensors.torch import load_file, save_file

    for name in (
        "policy_truncated",
        "policy_badjson",
        "policy_float64",
        "policy_ghost",
        "policy_unknown",
        "policy_format",
    ):
        shutil.copytree(policy, root / name)
    weights = root / "policy_truncated" / "action_expert.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cfg = root / "policy_badjson" / "mot_config.json"
    cfg.write_text(cfg.read_text()[:200])
    state = load_file(str(root / "policy_float64" / "action_expert.safetensors"))
    state["decision_queries"] = state["decision_queries"].double()
    save_file(state, str(root / "policy_float64" / "action_expert.safetensors"))
    for name, head in (
        ("policy_ghost", {"name": "ghost_head", "module": "ghost_module_xyz"}),
        ("policy_unknown", {}),
    ):
        meta = json.loads((root / name / "mot_config.json").read_text())
        meta["config"]["head"] = "ghost_head"
        meta["head"] = head
        (root / name / "mot_config.json").write_text(json.dumps(meta))
    meta = json.loads((root / "policy_format" / "mot_config.json").read_text())
    meta["format"] = 99
    (root / "policy_format" / "mot_config.json").write_text(json.dumps(meta))
    for name in ("data_hash", "data_truncated", "data_badindex"):
        shutil.copytree(data / "test", root / name)
    shard = sorted((root / "data_hash" / "shards").glob("*.npz"))[0]
    with zipfile.ZipFile(shard, "a") as zf:  # still a valid zip, but not the bytes the index hashed
        zf.writestr("extra.npy", b"")
    shard = sorted((root / "data_truncated" / "shards").glob("*.npz"))[0]
    shard.write_bytes(shard.read_bytes()[:300])
    index = root / "data_badindex" / "index.json"
    index.write_text(index.read_text()[:100])


# ---------------------------------------------------------------------------------------------- rows
def _sensors(e: Env, **changes):
    return dataclasses.replace(e.batch, **changes)


def _ctx(e: Env, **changes):
    return dataclasses.replace(e.ctx, **changes)


def _nan(t):
    t = t.clone()
    t.view(-1)[0] = float("nan")
    return t


def _small(t):  # halve the image size (uint8 stays uint8)
    return t[..., ::2, ::2].contiguous()


def _head(name="mlp", **kw):
    from heads import build_head

    return build_head(name, _DIMS, **kw)


def _collect(e: Env, out, workers=1, **config):
    from driving.collect import CollectConfig, collect

    base = dict(
        scenarios=["highway"], episodes=1, split="test", scenario_overrides={"highway": {"duration_s": 12.0}}
    )
    collect(CollectConfig(**{**base, **config}), out, workers=workers, progress=False)


def _study(over=None, profile="smoke"):
    from studies.config import load_study_config

    return load_study_config(profile, over)


def _validate(over):
    from studies.validate import validate_study

    validate_study(_study(over))


def _run_study(out, workers=1):
    from studies.runner import run_study

    run_study(out, _study(), workers=workers, progress=None)


def _register_object():
    from heads import register_head

    register_head("not_a_head")(object)


_DIMS = ContextDims(latent_dim=8, reasoning_dim=8)
_DIFF = {"refiner": {"dim": 32, "depth": 1, "moa": {"num_heads": 4}}}


def _load(e, name):
    from training.policy import load_pretrained

    load_pretrained(e.root / name)


ROWS = [
    # -- sensors and contexts at the model boundary ------------------------------------------------
    api("float64_ego_state", lambda e: e.backbone(_sensors(e, ego_state=e.batch.ego_state.double())), "SensorBatch.ego_state"),
    api("float64_bev", lambda e: e.backbone(_sensors(e, bev=e.batch.bev.double())), "SensorBatch.bev"),
    api("nan_ego_history", lambda e: e.backbone(_sensors(e, ego_history=_nan(e.batch.ego_history))), "SensorBatch.ego_history"),
    api("inf_target_point", lambda e: e.backbone.act(_sensors(e, target_point=e.batch.target_point / 0.0), e.backbone.prefill(e.batch)), "SensorBatch.target_point"),
    api("empty_prompt", lambda e: e.backbone(_sensors(e, prompts=["", "go straight ."])), "SensorBatch.prompts"),
    api("prompt_count", lambda e: e.backbone(_sensors(e, prompts=["go"])), "SensorBatch.prompts"),
    api("float_rgb", lambda e: e.backbone(_sensors(e, rgb=e.batch.rgb.float())), "SensorBatch.rgb"),
    api("camera_32px_for_a_64px_policy", lambda e: e.backbone(_sensors(e, rgb=_small(e.batch.rgb), rgb_history=_small(e.batch.rgb_history))), "SensorBatch.rgb: expected per-sample shape (3, 64, 64) (what the policy was trained with), got (3, 32, 32)"),
    api("two_frame_history", lambda e: e.backbone(_sensors(e, rgb_history=e.batch.rgb_history[:, :2].contiguous())), "SensorBatch.rgb_history"),
    api("bev_size", lambda e: e.backbone(_sensors(e, bev=_small(e.batch.bev))), "SensorBatch.bev"),
    api("batch_mismatch", lambda e: e.backbone(_sensors(e, ego_state=torch.zeros(3, 3))), "SensorBatch.ego_state"),
    api("not_a_sensor_batch", lambda e: e.backbone.ae({"rgb": 1}, e.backbone.prefill(e.batch)), "batch"),
    api("nan_context_into_a_plugin_head", lambda e: _plugin_head(e)(_ctx(e, plan_latents=_nan(e.ctx.plan_latents))), "ActionContext.plan_latents"),
    api("context_width", lambda e: _plugin_head(e)(_ctx(e, bev_tokens=e.ctx.bev_tokens[..., :5])), "ActionContext.bev_tokens"),
    api("not_a_context", lambda e: _head()("ctx"), "ActionContext"),
    api("plan_target_shape", lambda e: e.backbone.ae.head.loss(e.ctx, _target(e, 5)), "PlanTarget.waypoints"),
    # -- heads and their configs -------------------------------------------------------------------
    api("unknown_head", lambda e: _head("mpl"), "unknown planning head 'mpl'"),
    api("bad_head_value", lambda e: _head(hidden_dim=-1), "MLPHeadConfig.hidden_dim"),
    api("unknown_head_kwarg", lambda e: _head(hiden_dim=3), "head 'mlp'"),
    api("unknown_noise_model", lambda e: _head("diffusion", denoiser={"noise": "pink"}, **_DIFF), "DenoiserConfig.noise"),
    api("unknown_scheduler", lambda e: _head("diffusion", denoiser={"schedule": {"scheduler": "magic"}}, **_DIFF), "ScheduleConfig.scheduler"),
    api("string_for_a_number", lambda e: _head("diffusion", refiner={"dim": "big"}), "RefinerConfig.dim"),
    api("candidates_of_a_deterministic_head", lambda e: _head().candidates(_fake_ctx(), 4), "supports_samples"),
    api("register_a_non_head", lambda e: _register_object(), "register_head('not_a_head')"),
    api("with_head_unknown", lambda e: __import__("training.policy").policy.with_head(e.backbone.ae, "nope"), "unknown planning head 'nope'"),
    api("context_dims", lambda e: ContextDims(latent_dim=0), "ContextDims.latent_dim"),
    api("vq_beta_string", lambda e: _latent_config("VQConfig", beta="0.25"), "VQConfig.beta: expected a number >= 0"),
    api("lam_horizon_string", lambda e: _latent_config("LAMConfig", horizon_s="1"), "LAMConfig.horizon_s: expected a number > 0"),
    api("pretrain_plan_weight_string", lambda e: _latent_spec(pretrain_plan_weight="1"), "LatentSpec.pretrain_plan_weight: expected a number >= 0"),
    api("optim_lr", lambda e: __import__("training.optim").optim.OptimConfig(lr=-1.0), "OptimConfig.lr"),
    # -- policy folders ------------------------------------------------------------------------------
    api("policy_missing", lambda e: _load(e, "nothing_here"), "policy: expected a policy folder"),
    api("policy_truncated_weights", lambda e: _load(e, "policy_truncated"), "action_expert.safetensors: expected a complete safetensors file"),
    api("policy_truncated_config", lambda e: _load(e, "policy_badjson"), "mot_config.json: expected a JSON policy config"),
    api("policy_float64_tensor", lambda e: _load(e, "policy_float64"), "dtype mismatches ['decision_queries: expected torch.float32, got torch.float64']"),
    api("policy_head_module_missing", lambda e: _load(e, "policy_ghost"), "expected an importable module 'ghost_module_xyz' (needed for its head 'ghost_head')"),
    api("policy_head_unknown", lambda e: _load(e, "policy_unknown"), "unknown planning head 'ghost_head'"),
    api("policy_format", lambda e: _load(e, "policy_format"), "mot_config.json: expected format 1 or 2, got 99"),
    api("save_into_a_user_folder", lambda e: _save(e, "user_folder"), "export_dir: expected a new or empty folder"),
    api("save_into_a_file", lambda e: _save(e, "a_file.txt"), "export_dir: expected a folder for the policy export, got the file"),
    api("ae_stage_export_into_a_user_folder", lambda e: _stage(e, "ActionExpertStage", export_dir=e.p("user_folder")), "export_dir"),
    api("refiner_stage_export_into_a_file", lambda e: _stage(e, "RefinerStage", policy=str(e.policy), export_dir=e.p("a_file.txt")), "export_dir"),
    api("ue_stage_export_into_a_user_folder", lambda e: _stage(e, "UEPretrainStage", export_dir=e.p("user_folder")), "export_dir"),
    # -- checkpoints ---------------------------------------------------------------------------------
    api("ckpt_missing", lambda e: _peek(e, "none.ckpt"), "--ckpt_path: expected an existing Lightning checkpoint"),
    api("ckpt_needs_unpickling", lambda e: _peek(e, "malicious.ckpt"), "expected a checkpoint that loads with weights_only=True"),
    api("ckpt_truncated", lambda e: _peek(e, "truncated.ckpt"), "--ckpt_path: expected a complete Lightning checkpoint"),
    # -- datasets and shards -------------------------------------------------------------------------
    api("collect_into_a_file", lambda e: _collect(e, e.p("a_file.txt")), "out: expected a dataset folder, got the file"),
    api("collect_into_a_user_folder", lambda e: _collect(e, e.p("user_folder")), "out: expected a new or empty folder"),
    api("collect_zero_workers", lambda e: _collect(e, e.p("new_data"), workers=0), "workers: expected an int >= 1"),
    api("collect_another_config_into_a_dataset", lambda e: _collect(e, e.data / "test"), "scenarios: ['highway', 'merge'] -> ['highway']"),
    api("collect_episodes_word", lambda e: _collect(e, e.p("new_data"), episodes="many"), "CollectConfig.episodes"),
    api("collect_unknown_scenario", lambda e: _collect(e, e.p("new_data"), scenarios=["moon"]), "CollectConfig.scenarios"),
    api("dataset_without_index", lambda e: _dataset(e.root / "user_folder"), "index.json"),
    api("dataset_shard_fails_its_hash", lambda e: _dataset(e.root / "data_hash")[0], "expected sha256"),
    api("dataset_truncated_shard", lambda e: _dataset(e.root / "data_truncated")[0], "shards/"),
    api("dataset_truncated_index", lambda e: _dataset(e.root / "data_badindex"), "index.json: expected JSON"),
    api("datamodule_batch_size", lambda e: __import__("driving.datamodule").datamodule.DrivingDataModule(e.data, batch_size=0), "DrivingDataModule.batch_size"),
    api("records_is_a_folder", lambda e: __import__("automot.io").io.read_jsonl(e.root / "user_folder"), "records: expected a JSON-lines file"),
    # -- study configs (all fail before any task) -----------------------------------------------------
    api("study_episodes_word", lambda e: _study({"eval": {"episodes": "many"}}), "EvalSpec.episodes: expected an int, got 'many'"),
    api("study_seed_scalar", lambda e: _study({"training_seeds": 3}), "StudyConfig.training_seeds: expected a list of ints, got 3"),
    api("study_unknown_field", lambda e: _study({"epochs": 3}), "StudyConfig: unknown field(s) ['epochs']"),
    api("study_unknown_profile", lambda e: _study(profile="gigantic"), "unknown study profile 'gigantic'"),
    api("study_head_without_name", lambda e: _study({"heads": [{"label": "x"}]}), "HeadSpec: missing required field(s) ['name']"),
    api("study_negative_warmup", lambda e: _study({"ae": {"warmup_steps": -5}}), "TrainSpec.warmup_steps"),
    api("study_unknown_head", lambda e: _validate({"heads": [{"name": "mlp"}, {"name": "difusion"}]}), "heads[1].name"),
    api("study_bad_head_kwargs", lambda e: _validate({"heads": [{"name": "mlp"}, {"name": "diffusion", "kwargs": {"refiner": {"dim": 30}}}]}), "heads[1].kwargs"),
    api("study_unknown_noise_model", lambda e: _validate({"heads": [{"name": "mlp"}, {"name": "diffusion", "kwargs": {"denoiser": {"noise": "pink"}}}]}), "DenoiserConfig.noise"),
    api("study_unknown_preset", lambda e: _validate({"preset": "huge"}), "study config preset"),
    api("study_unknown_scenario", lambda e: _validate({"data": {"scenarios": ["moon"]}}), "data.scenarios"),
    api("study_label_with_a_slash", lambda e: _validate({"heads": [{"name": "mlp"}, {"name": "mlp", "label": "a/b"}]}), "heads[1].label"),
    api("study_into_a_file", lambda e: _run_study(e.p("a_file.txt")), "out: expected a study folder, got the file"),
    api("study_into_a_user_folder", lambda e: _run_study(e.p("user_folder")), "out: expected a new or empty folder"),
    api("study_zero_workers", lambda e: _run_study(e.p("new_study"), workers=0), "workers: expected an int >= 1"),
    # -- plug-ins --------------------------------------------------------------------------------------
    api("import_missing_module", lambda e: __import__("automot.plugins").plugins.import_module("no_such_module_xyz"), "--import: expected an importable module"),
    api("import_missing_file", lambda e: __import__("automot.plugins").plugins.import_module(e.p("nothing.py")), "--import: expected an existing .py file"),
    # -- every CLI subcommand ----------------------------------------------------------------------------
    cli("collect_out_is_a_file", lambda e: ["collect", "--out", e.p("a_file.txt"), "--episodes", "1", "--scenarios", "highway"], "out: expected a dataset folder"),
    cli("collect_zero_workers", lambda e: ["collect", "--out", e.p("new_data"), "--workers", "0"], "--workers: expected an int >= 1, got '0'"),
    cli("collect_episodes_word", lambda e: ["collect", "--out", e.p("new_data"), "--episodes", "many"], "--episodes: expected an int >= 1, got 'many'"),
    cli("collect_negative_density", lambda e: ["collect", "--out", e.p("new_data"), "--density", "-1"], "--density: expected a number > 0"),
    cli("collect_unknown_scenario", lambda e: ["collect", "--out", e.p("new_data"), "--scenarios", "moon"], "CollectConfig.scenarios"),
    cli("study_out_is_a_file", lambda e: ["study", "--profile", "smoke", "--out", e.p("a_file.txt")], "out: expected a study folder"),
    cli("study_broken_yaml", lambda e: ["study", "--config", e.p("broken.yaml"), "--out", e.p("new_study")], "expected valid YAML/JSON, got a syntax error at line"),
    cli("study_word_for_a_number", lambda e: ["study", "--config", e.p("words.yaml"), "--out", e.p("new_study")], "EvalSpec.episodes"),
    cli("study_unknown_noise_model", lambda e: ["study", "--config", e.p("noise.yaml"), "--out", e.p("new_study")], "DenoiserConfig.noise"),
    cli("study_missing_config", lambda e: ["study", "--config", e.p("none.yaml"), "--out", e.p("new_study")], "--config: expected an existing YAML/JSON file"),
    cli("study_zero_workers", lambda e: ["study", "--profile", "smoke", "--out", e.p("new_study"), "--workers", "0"], "--workers: expected an int >= 1"),
    cli("demo_unknown_profile", lambda e: ["demo", "--profile", "gigantic", "--out", e.p("new_study")], "unknown study profile 'gigantic'"),
    cli("eval_missing_policy", lambda e: ["eval", "--ckpt", e.p("nothing_here"), "--closed-loop"], "policy: expected a policy folder"),
    cli("eval_ckpt_is_a_file", lambda e: ["eval", "--ckpt", e.p("malicious.ckpt"), "--closed-loop"], "--ckpt: expected a policy folder"),
    cli("eval_records_is_a_folder", lambda e: ["eval", "--ckpt", str(e.policy), "--closed-loop", "--records", e.p("user_folder")], "--records: expected a JSON-lines file"),
    cli("eval_without_data", lambda e: ["eval", "--ckpt", str(e.policy)], "--data: expected a dataset root"),
    cli("eval_shadow_without_records", lambda e: ["eval", "--ckpt", str(e.policy), "--closed-loop", "--shadow-expert"], "--shadow-expert: expected --closed-loop and --records FILE"),
    cli("eval_data_without_the_split", lambda e: ["eval", "--ckpt", str(e.policy), "--data", e.p("user_folder")], "--data: expected a dataset root holding a test/ folder"),
    cli("eval_unknown_head", lambda e: ["eval", "--ckpt", str(e.policy), "--data", str(e.data), "--head", "mpl"], "unknown planning head 'mpl'"),
    cli("eval_truncated_policy", lambda e: ["eval", "--ckpt", e.p("policy_truncated"), "--data", str(e.data)], "action_expert.safetensors"),
    cli("eval_neither_policy_nor_baseline", lambda e: ["eval", "--closed-loop"], "--ckpt / --baseline: expected exactly one of them"),
    cli("eval_policy_and_baseline", lambda e: ["eval", "--ckpt", str(e.policy), "--baseline", "expert", "--closed-loop"], "--ckpt / --baseline: expected exactly one of them"),
    cli("eval_unknown_baseline", lambda e: ["eval", "--baseline", "oracle", "--closed-loop"], "--baseline: expected one of ['constant_velocity', 'expert'], got 'oracle'"),
    cli("eval_expert_open_loop", lambda e: ["eval", "--baseline", "expert", "--data", str(e.data)], "--data: the expert's plan is the dataset's label"),
    cli("eval_baseline_with_a_head", lambda e: ["eval", "--baseline", "constant_velocity", "--closed-loop", "--head", "mlp"], "--head: expected none with --baseline"),
    cli("eval_baseline_without_work", lambda e: ["eval", "--baseline", "constant_velocity"], "--closed-loop: expected it (or --data"),
    cli("eval_baseline_records_folder", lambda e: ["eval", "--baseline", "expert", "--closed-loop", "--records", e.p("user_folder")], "--records: expected a JSON-lines file"),
    cli("eval_zero_episodes", lambda e: ["eval", "--ckpt", str(e.policy), "--closed-loop", "--episodes", "0"], "--episodes: expected an int >= 1"),
    cli("bench_refiner_batch_zero", lambda e: ["bench", "refiner", "--batch-sizes", "0"], "--batch-sizes: expected an int >= 1, got '0'"),
    cli("bench_async_zero_frames", lambda e: ["bench", "async", "--frames", "0"], "--frames: expected an int >= 1"),
    cli("bench_train_zero_batch", lambda e: ["bench", "train", "--batch-size", "0"], "--batch-size: expected an int >= 1"),
    cli("expert_zero_workers", lambda e: ["expert", "--workers", "0"], "--workers: expected an int >= 1"),
    cli("drive_records_is_a_folder", lambda e: ["drive", "--records", e.p("user_folder"), "--episodes", "1"], "--records: expected a JSON-lines file"),
    cli("drive_unknown_scenario", lambda e: ["drive", "--scenario", "moon", "--episodes", "1"], "unknown scenario 'moon'"),
    cli("viz_without_index", lambda e: ["viz", "--data", e.p("user_folder"), "--out", e.p("x.png")], "index.json"),
    cli("viz_index_out_of_range", lambda e: ["viz", "--data", str(e.data / "test"), "--index", "99999", "--out", e.p("x.png")], "--index: expected 0 <= index <"),
    cli("viz_out_is_a_folder", lambda e: ["viz", "--data", str(e.data / "test"), "--out", e.p("user_folder")], "--out: expected a PNG file path"),
    cli("fit_missing_ckpt", lambda e: ["fit", "--config", str(e.fit_yaml), "--ckpt_path", e.p("none.ckpt")], "--ckpt_path: expected an existing Lightning checkpoint"),
    cli("fit_ckpt_needs_unpickling", lambda e: ["fit", "--config", str(e.fit_yaml), "--ckpt_path", e.p("malicious.ckpt")], "weights_only=True"),
    cli("fit_negative_lr", lambda e: ["fit", "--config", str(e.fit_yaml), "--model.init_args.optim={\"lr\": -1}"], "OptimConfig.lr: expected a value > 0, got -1"),
    cli("fit_export_into_a_file", lambda e: ["fit", "--config", str(e.fit_yaml), f"--model.init_args.export_dir={e.p('a_file.txt')}"], "export_dir: expected a folder"),
    cli("fit_export_into_a_user_folder", lambda e: ["fit", "--config", str(e.fit_yaml), f"--model.init_args.export_dir={e.p('user_folder')}"], "export_dir: expected a new or empty folder"),
    cli("fit_unknown_head", lambda e: ["fit", "--config", str(e.fit_yaml), "--model.init_args.head=mpl"], "unknown planning head 'mpl'"),
    cli("fit_unknown_key", lambda e: ["fit", "--config", str(e.fit_yaml), "--model.init_args.bogus=1"], "got the unknown key 'bogus'"),
    cli("fit_word_for_an_int", lambda e: ["fit", "--config", str(e.fit_yaml), "--trainer.max_steps=abc"], "trainer.max_steps"),
    cli("fit_missing_config", lambda e: ["fit", "--config", e.p("none.yaml")], "none.yaml"),
    cli("import_missing_module", lambda e: ["drive", "--import", "no_such_module_xyz", "--episodes", "1"], "--import: expected an importable module 'no_such_module_xyz'"),
]  # fmt: skip


def _plugin_head(e: Env):
    import importlib

    from heads import build_head

    importlib.import_module(MODULE)
    return build_head("cv_residual", e.backbone.ae.context_dims)


def _fake_ctx():
    from tests.helpers import make_context

    return make_context(_DIMS, batch=2)


def _target(e: Env, nw: int):
    from heads import PlanTarget

    return PlanTarget(waypoints=torch.zeros(2, nw, 2), route=torch.zeros(2, 20, 2))


def _save(e: Env, name: str):
    from training.policy import save_pretrained

    save_pretrained(e.backbone.ae, e.root / name)


def _stage(e: Env, cls: str, **kwargs):
    import training.stages

    getattr(training.stages, cls)(**kwargs)


def _latent_config(cls: str, **kwargs):
    import latent.config

    getattr(latent.config, cls)(**kwargs)


def _latent_spec(**kwargs):
    from studies.config import LatentSpec

    LatentSpec(**kwargs)


def _peek(e: Env, name: str):
    from training.run_folders import peek_checkpoint

    peek_checkpoint(e.root / name)


def _dataset(path):
    from driving.dataset import DrivingDataset

    return DrivingDataset(path)


def _snapshot(*roots: Path) -> dict:
    """Every file and folder under `roots` with its size, mtime and mode: any write shows up."""
    out = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            st = path.stat()
            out[str(path)] = (path.is_dir(), st.st_size if path.is_file() else 0, st.st_mtime_ns, st.st_mode)
    return out


def test_the_table_has_at_least_60_distinct_rows():
    ids = [r.id + ("/cli" if r.cli else "") for r in ROWS]
    assert len(ids) >= 60 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: ("cli-" if r.cli else "api-") + r.id)
def test_bad_input_is_stopped_with_a_clear_message(row, env, capsys):
    before = _snapshot(env.root, env.data)
    if row.cli:
        try:
            code = main(row.run(env))
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        error_lines = [line for line in err.splitlines() if ": error: " in line]
        assert len(error_lines) == 1, err  # one line, not a dump
        message = error_lines[0]
    else:
        with pytest.raises(ValueError) as raised:
            row.run(env)
        message = str(raised.value)
        assert "\n" not in message, message
    assert row.field in message, message
    assert "expected" in message.lower(), message
    assert _snapshot(env.root, env.data) == before, "an input file or folder was created, changed or removed"
