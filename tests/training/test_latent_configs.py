"""The shipped configs of the latent stages parse (LightningCLI, class paths, nested configs)."""

import pytest

from automot.cli import main


@pytest.mark.parametrize(
    "path",
    [
        "configs/tiny/lam.yaml",
        "configs/tiny/latent_pretrain.yaml",
        "configs/tiny/latent_finetune.yaml",
        "configs/tiny/distill.yaml",
    ],
)
def test_every_latent_config_parses(path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["fit", "--config", path, "--print_config"])
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert (
        "class_path: training.stages." in out and "class_path: latent.datamodule.TransitionDataModule" in out
    )
