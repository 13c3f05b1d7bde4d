"""A head defined outside the library (examples/cv_residual_head.py) plugs in through the CLI:
`automot fit --import` trains it, the policy folder records its module, `automot eval --import`
evaluates it, loading it without the module names the module, and output stays quiet by default."""

import json
import logging
import sys

import pytest
import yaml

from automot.cli import main
from heads import HEADS, available_heads
from training.policy import load_pretrained

MODULE = "examples.cv_residual_head"


def _fit_config(tmp_path, data, head="cv_residual", steps=3):
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": steps,
            "limit_val_batches": 0,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "logs"), "name": "ae"}},
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(tmp_path / "ckpt"), "every_n_train_steps": 2, "save_last": True}}],
        },
        "model": {
            "class_path": "training.stages.ActionExpertStage",
            "init_args": {"backbone": {"preset": "tiny", "ue_checkpoint": None}, "head": head,
                          "optim": {"lr": 2e-3, "warmup_steps": 1}, "export_dir": str(tmp_path / "policy")},
        },
        "data": {"class_path": "driving.datamodule.DrivingDataModule",
                 "init_args": {"train_dirs": str(data / "train"), "val_dirs": str(data / "val"), "batch_size": 8}},
    }  # fmt: skip
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    return root, _fit_config(root, tiny_dataset)


def test_fit_and_eval_a_plugin_head_through_the_cli(trained, tiny_dataset, capfd):
    root, config = trained
    assert main(["fit", "--import", MODULE, "--config", str(config)]) == 0
    fit_out = capfd.readouterr()
    meta = json.loads((root / "policy" / "mot_config.json").read_text())
    assert meta["head"] == {"name": "cv_residual", "module": MODULE, "class": "ConstantVelocityResidualHead"}
    assert meta["input_shapes"]["rgb"] == [3, 64, 64]
    # Quiet by default: no Lightning tips or banners, no dependency deprecation notices, no epoch bar.
    for noise in ("Tip:", "GPU available", "past_key_values", "eval mode", "Epoch ", "Params"):
        assert noise not in fit_out.out + fit_out.err, noise

    argv = ["eval", "--import", MODULE, "--ckpt", str(root / "policy"), "--data", str(tiny_dataset), "--json"]
    assert main(argv) == 0
    result = json.loads(capfd.readouterr().out)
    assert result["head"] == "cv_residual" and result["open_loop"]["samples"] > 0
    assert result["open_loop"]["l2_avg_stp3"] > 0


def test_loading_a_plugin_policy_without_its_module_names_the_module(trained, monkeypatch):
    root, _ = trained
    if not (root / "policy" / "mot_config.json").exists():
        pytest.skip("needs the policy of the previous test")
    monkeypatch.delitem(HEADS._entries, "cv_residual")
    monkeypatch.setitem(sys.modules, MODULE, None)  # importing it now fails, as on a machine without it
    assert "cv_residual" not in available_heads()
    with pytest.raises(
        ValueError,
        match=rf"policy .*expected an importable module '{MODULE}' \(needed for its head 'cv_residual'\)",
    ):
        load_pretrained(root / "policy")
    code = main(["eval", "--ckpt", str(root / "policy"), "--closed-loop", "--episodes", "1"])
    assert code == 2


def test_unknown_plugin_modules_and_heads_are_named(tmp_path, capsys):
    assert main(["drive", "--import", "no_such_plugin_module", "--episodes", "1"]) == 2
    assert "--import: expected an importable module 'no_such_plugin_module'" in capsys.readouterr().err
    assert main(["fit", "--config", str(_fit_config(tmp_path, tmp_path, head="no_such_head"))]) == 2
    err = capsys.readouterr().err
    assert "unknown planning head 'no_such_head'" in err and "--import MODULE" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_verbose_shows_what_quiet_hides(trained, tiny_dataset, capfd, tmp_path):
    config = _fit_config(tmp_path, tiny_dataset, head="mlp", steps=1)
    assert main(["fit", "--verbose", "--config", str(config)]) == 0
    out = capfd.readouterr()
    assert "Params" in out.out  # the model summary
    # Lightning's INFO banners (GPU available, tips) are let through again.
    assert logging.getLogger("lightning.pytorch").getEffectiveLevel() <= logging.INFO
    main(["drive", "--episodes", "1", "--scenario", "highway", "--duration", "1", "--json"])
    assert logging.getLogger("lightning.pytorch").getEffectiveLevel() == logging.WARNING  # quiet again
