"""Run by tests/training/test_ddp.py as `python tests/training/ddp_script.py OUT_DIR`: a few training
steps of the action-expert stage with Lightning's DDP strategy on 2 CPU processes (gloo), then each
rank writes its weights and the synced values of metrics it updated with its own, different data."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from automot.io import save_safetensors_atomic  # noqa: E402
from tests.training.fakes import FakeDataModule  # noqa: E402
from training.metrics import CollisionRate, DecisionAccuracy, PlanL2  # noqa: E402
from training.optim import OptimConfig  # noqa: E402
from training.stages import ActionExpertStage  # noqa: E402


def rank_data(rank: int):
    """Rank-specific inputs for the metric sync check (the test recomputes them for both ranks)."""
    g = torch.Generator().manual_seed(100 + rank)
    n = 3 + rank  # unequal counts per rank
    pred, target = torch.randn(n, 6, 2, generator=g), torch.randn(n, 6, 2, generator=g)
    collided = torch.rand(n, 6, generator=g) > 0.7
    lat_logits, lon_logits = torch.randn(n, 3, 5, generator=g), torch.randn(n, 3, 4, generator=g)
    lat_t, lon_t = torch.randint(0, 5, (n, 3), generator=g), torch.randint(0, 4, (n, 3), generator=g)
    return pred, target, collided, lat_logits, lon_logits, lat_t, lon_t


def main(out: Path) -> None:
    torch.set_num_threads(1)
    L.seed_everything(0, workers=True)
    stage = ActionExpertStage(optim=OptimConfig(warmup_steps=1))
    trainer = L.Trainer(
        strategy="ddp",
        devices=2,
        accelerator="cpu",
        max_steps=3,
        limit_val_batches=0,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(stage, datamodule=FakeDataModule(n=24, batch_size=4))
    rank = trainer.global_rank
    save_safetensors_atomic(stage.ae.state_dict(), out / f"weights_rank{rank}.safetensors")

    pred, target, collided, lat_logits, lon_logits, lat_t, lon_t = rank_data(rank)
    metrics = {"l2": PlanL2("uniad"), "collision": CollisionRate("stp3"), "decision": DecisionAccuracy()}
    metrics["l2"].update(pred, target)
    metrics["collision"].update(collided)
    metrics["decision"].update(lat_logits, lon_logits, lat_t, lon_t)
    synced = {name: {k: float(v) for k, v in m.compute().items()} for name, m in metrics.items()}
    (out / f"metrics_rank{rank}.json").write_text(json.dumps(synced, sort_keys=True))
    # Both ranks leave the gloo group before the interpreter exits: a group torn down at exit can
    # abort a rank ("terminate called without an active exception") on a loaded machine.
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
