"""Every shipped stage config can be resumed and never exports into its own logs or checkpoints."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _inside(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_writes_last_ckpt_and_exports_apart_from_its_logs(path):
    config = yaml.safe_load(path.read_text())
    trainer, init = config["trainer"], config["model"]["init_args"]
    checkpoints = [c for c in trainer.get("callbacks", []) if c["class_path"].endswith("ModelCheckpoint")]
    assert len(checkpoints) == 1, "expected one ModelCheckpoint callback"
    args = checkpoints[0]["init_args"]
    assert args["save_last"] is True and 0 < args["every_n_train_steps"] <= trainer["max_steps"]
    export = Path(init["export_dir"])
    folders = [Path(args["dirpath"])]
    for logger in trainer["logger"]:
        folders.append(Path(logger["init_args"]["save_dir"]) / logger["init_args"].get("name", ""))
    for folder in folders:
        assert not _inside(export, folder), f"export_dir {export} overlaps {folder}"
    assert len(CONFIGS) == 12
