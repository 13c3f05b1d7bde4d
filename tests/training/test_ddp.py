"""DDP on 2 CPU processes (gloo): both ranks end with identical weights, and metric states sync to
the values of one process seeing the union of the data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from automot.io import load_safetensors
from tests.training.ddp_script import rank_data
from training.metrics import CollisionRate, DecisionAccuracy, PlanL2

SCRIPT = Path(__file__).with_name("ddp_script.py")


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "PYTHONPATH": str(SCRIPT.parents[2])}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_both_ranks_end_with_identical_weights(ddp_run):
    w0 = load_safetensors(ddp_run / "weights_rank0.safetensors")
    w1 = load_safetensors(ddp_run / "weights_rank1.safetensors")
    assert w0.keys() == w1.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)


def test_metric_states_sync_to_the_union_of_both_ranks(ddp_run):
    union = [torch.cat(parts) for parts in zip(rank_data(0), rank_data(1))]
    pred, target, collided, lat_logits, lon_logits, lat_t, lon_t = union
    ref = {"l2": PlanL2("uniad"), "collision": CollisionRate("stp3"), "decision": DecisionAccuracy()}
    ref["l2"].update(pred, target)
    ref["collision"].update(collided)
    ref["decision"].update(lat_logits, lon_logits, lat_t, lon_t)
    expected = {name: {k: float(v) for k, v in m.compute().items()} for name, m in ref.items()}
    single = PlanL2("uniad")
    single.update(*rank_data(0)[:2])
    for rank in (0, 1):
        got = json.loads((ddp_run / f"metrics_rank{rank}.json").read_text())
        for name in expected:
            assert got[name].keys() == expected[name].keys()
            for k, v in expected[name].items():
                assert got[name][k] == pytest.approx(v, rel=1e-6), (rank, name, k)
    # Not synced, rank 0 alone would differ: the check can fail.
    assert float(single.compute()["l2_avg"]) != pytest.approx(expected["l2"]["l2_avg"], rel=1e-3)
