"""Dataset collection: resumable after a kill, worker-count independent, corrupt shards named, batches."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from driving.collect import CollectConfig, collect
from driving.config import CameraConfig, SensorConfig
from driving.dataset import DrivingDataset, collate
from driving.shards import read_shard

ROOT = Path(__file__).resolve().parents[2]
EPISODES = 4


def tiny_config() -> CollectConfig:
    # Exactly what the CLI call below builds.
    return CollectConfig(
        scenarios=["merge"],
        episodes=EPISODES,
        split="train",
        async_fraction=0.25,
        scenario_overrides={"merge": {"duration_s": 6.0}},
        sensors=SensorConfig(camera=CameraConfig(height=16, width=16)),
    )


def cli_collect(out: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "automot.cli",
        "collect",
        "--scenarios",
        "merge",
        "--episodes",
        str(EPISODES),
    ]
    cmd += ["--duration", "6", "--image-size", "16", "--async-fraction", "0.25", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    collect(tiny_config(), out, workers=1, progress=False)
    return out


def test_killed_and_resumed_collection_equals_an_uninterrupted_one(reference, tmp_path):
    out = tmp_path / "resumed"
    proc = cli_collect(out)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "shards").glob("*.npz"))) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    written = sorted((out / "shards").glob("*.npz"))
    assert 1 <= len(written) < EPISODES  # really half-way
    (out / "shards" / ".merge-0000099.npz.stale.tmp").write_bytes(
        b"half a shard"
    )  # what a kill mid-write leaves
    before = {p.name: p.stat().st_mtime_ns for p in written}
    index = collect(tiny_config(), out, workers=2, progress=False)  # resume, with another worker count
    assert index["complete"] and len(index["episodes"]) == EPISODES
    assert {p.name: p.stat().st_mtime_ns for p in written} == before  # finished episodes were not redone
    assert files(out) == files(reference)  # byte for byte, index included


def test_resuming_with_another_config_is_refused(reference, tmp_path):
    other = tiny_config()
    other.sample_every = 2
    with pytest.raises(ValueError, match="to hold a dataset with this config"):
        collect(other, reference, progress=False)


def test_corrupt_or_mismatched_shards_raise_naming_the_file(reference, tmp_path):
    out = tmp_path / "copy"
    for name, data in files(reference).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    shard = sorted((out / "shards").glob("*.npz"))[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    dataset = DrivingDataset(out)
    index = json.loads((out / "index.json").read_text())
    first_of_bad = sum(e["samples"] for e in index["episodes"][:1])
    dataset[0]  # the intact first shard still reads
    with pytest.raises(ValueError, match=rf"{shard.name}.*sha256"):
        dataset[first_of_bad]
    shard.write_bytes(bytes(data[: len(data) // 3]))  # truncated, read without the index's checksum
    with pytest.raises(ValueError, match=rf"{shard.name}.*readable \.npz"):
        read_shard(shard)
    good = sorted((out / "shards").glob("*.npz"))[0]
    with pytest.raises(ValueError, match=rf"{good.name}: field frames axis 2 \(H\) expected 32, got 16"):
        read_shard(good, expected_dims={"H": 32})
    with pytest.raises(ValueError, match=r"index\.json"):
        DrivingDataset(tmp_path)


def test_batches_have_the_documented_shapes_and_consistent_labels(reference):
    dataset = DrivingDataset(reference)
    samples = [dataset[i] for i in range(len(dataset))]
    batch = collate(samples)
    n = len(dataset)
    assert (
        batch.sensors.rgb_history.shape == (n, 4, 1, 3, 16, 16)
        and batch.sensors.rgb_history.dtype == torch.uint8
    )
    assert batch.sensors.bev.shape == (n, 4, 64, 64) and batch.waypoints.shape == (n, 6, 2)
    assert batch.route.shape == (n, 20, 2) and batch.agent_boxes.shape == (n, 6, 16, 5)
    assert batch.lateral.dtype == torch.int64 and batch.agent_mask.dtype == torch.bool
    assert batch.to("cpu").batch_size == n
    # Labels from two pipelines agree: the ego 0.5 s later in this sample's frame (waypoint 0) is the
    # inverse rigid transform of this sample's pose seen from 2 steps later (that sample's last history row).
    by_key = {(s["meta"]["seed"], s["meta"]["step"]): s for s in samples}
    checked = 0
    for (seed, step), s in by_key.items():
        later = by_key.get((seed, step + 2))
        if later is None:
            continue
        x, y, h, _ = later["ego_history"][-1].double().tolist()
        back = np.array([-(x * np.cos(h) + y * np.sin(h)), x * np.sin(h) - y * np.cos(h)])
        np.testing.assert_allclose(s["waypoints"][0].double().numpy(), back, atol=1e-3)
        checked += 1
    assert checked > 10
    # Asynchronous samples: the history ends at an older step, whose own sample shows that frame.
    lagged = [s for s in samples if s["meta"]["ue_step"] < s["meta"]["step"]]
    assert 0 < len(lagged) < n
    for s in lagged:
        ref = by_key.get((s["meta"]["seed"], s["meta"]["ue_step"]))
        if ref is not None:
            assert torch.equal(s["rgb_history"][-1, 0], ref["rgb"])
            if ref["meta"]["ue_step"] == ref["meta"]["step"]:  # a synchronous sample: same words
                assert s["prompt"] == ref["prompt"] and s["scene_text"] == ref["scene_text"]


def test_datamodule_shuffles_reproducibly(reference):
    from driving.datamodule import DrivingDataModule

    def order(seed):
        dm = DrivingDataModule(reference, val_dirs=reference, batch_size=5, seed=seed)
        return [b.meta["step"] for b in dm.train_dataloader()]

    assert order(3) == order(3) and order(3) != order(4)
    dm = DrivingDataModule(reference, batch_size=5)
    with pytest.raises(ValueError, match="val_dirs"):
        dm.val_dataloader()


def test_viz_cli_writes_a_png(reference, tmp_path, capsys):
    from automot.cli import main

    out = tmp_path / "sample.png"
    assert main(["viz", "--data", str(reference), "--index", "3", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert (
        main(["viz", "--data", str(reference), "--index", "100000", "--out", str(out)]) == 2
    )  # a clear error
    assert "--index" in capsys.readouterr().err
