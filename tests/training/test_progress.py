"""`automot fit` without a terminal: a progress line every N steps (and at the end), with the loss and an ETA."""

import io

import lightning as L
import pytest
import torch

from training.progress import LogProgress


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.w(batch[0]).pow(2).mean()
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)


def test_a_line_every_n_steps_and_one_at_the_end():
    stream = io.StringIO()
    trainer = L.Trainer(
        max_steps=10,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[LogProgress(4, stream=stream)],
    )
    trainer.fit(_Tiny())
    lines = stream.getvalue().splitlines()
    assert [ln.split(",")[0] for ln in lines] == ["step 4/10 (40%)", "step 8/10 (80%)", "step 10/10 (100%)"]
    assert all("train/loss" in ln and "steps/s" in ln for ln in lines)
    assert "ETA" in lines[0] and "ETA" not in lines[-1]
    with pytest.raises(ValueError, match="every_n_steps: expected an int >= 1, got 0"):
        LogProgress(0)
