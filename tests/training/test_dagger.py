"""A DAgger round: new shards labelled with the expert's plan at the states the learner visited,
earlier data untouched, and a round killed mid-way resumes to the same bytes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from driving.collect import collect
from driving.controller import Tracker
from driving.expert import ExpertPolicy
from driving.onpolicy import OnPolicyConfig, run_labelled_episode
from driving.scenarios import build_scenario
from driving.shards import read_shard
from driving.world import World
from mot.backbone import MoTBackbone
from tests.driving._onpolicy import assert_labels_are_expert_plans, replay_expert_plans, small_collect
from training.dagger import collect_round, load_planner, policy_id
from training.policy import save_pretrained

ROOT = Path(__file__).resolve().parents[2]
BETA = 0.3


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def learner(tmp_path_factory) -> Path:
    """An untrained tiny policy folder: it drives badly, which is the point of relabelling."""
    folder = tmp_path_factory.mktemp("learner") / "policy_mlp"
    save_pretrained(MoTBackbone.build("tiny", seed=3).ae, folder)
    return folder


@pytest.fixture(scope="module")
def round_one(learner, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dagger")
    collect(small_collect(episodes=2), root / "train", progress=False)  # the demonstrations
    collect_round(learner, root / "r1", small_collect(episodes=2, seed_start=10), beta=BETA, round_index=1)
    return root, learner


def test_round_labels_are_the_expert_plan_at_the_states_the_learner_visited(round_one):
    root, learner = round_one
    c = small_collect(episodes=2, seed_start=10)
    config = OnPolicyConfig(collect=c, beta=BETA, policy_id=policy_id(learner), seed_salt=1)
    learner_steps = 0
    for scenario, seed in c.episodes_plan():
        # The same episode driven again in this process gives the executed actions ...
        world = World(build_scenario(scenario, **c.scenario_overrides[scenario]), c.sim, c.sensors)
        trace = run_labelled_episode(
            world, ExpertPolicy(), Tracker(c.sim), config, seed, load_planner(str(learner)), Tracker(c.sim)
        )
        learner_steps += sum(not e for e in trace.expert_steps)
        # ... which, replayed with a fresh expert re-queried at every state, give the stored labels.
        replay, plans = replay_expert_plans(config, scenario, seed, trace.actions)
        shard = read_shard(root / "r1" / f"shards/{scenario}-{seed:07d}.npz")
        assert_labels_are_expert_plans(shard, plans, replay.log)
        assert str(shard["outcome"]) == trace.outcome
    assert learner_steps > 10  # the learner really drove (beta = 0.3)


def test_a_second_round_leaves_earlier_shards_byte_identical(round_one, tmp_path):
    root, learner = round_one
    before = {name: files(root / name) for name in ("train", "r1")}
    collect_round(learner, tmp_path / "r2", small_collect(episodes=1, seed_start=12), beta=0.0, round_index=2)
    assert {name: files(root / name) for name in ("train", "r1")} == before
    from driving.dataset import DrivingDataset

    data = DrivingDataset([root / "train", root / "r1", tmp_path / "r2"])
    assert len(data) == sum(len(DrivingDataset(d)) for d in (root / "train", root / "r1", tmp_path / "r2"))
    with pytest.raises(ValueError, match=r"each \(scenario, seed\) episode once"):
        DrivingDataset([root / "r1", root / "r1"])


def test_a_killed_round_resumes_to_the_same_dataset(round_one, tmp_path):
    root, learner = round_one
    out = tmp_path / "resumed"
    script = (
        "from training.dagger import collect_round\n"
        "from tests.driving._onpolicy import small_collect\n"
        f"collect_round({str(learner)!r}, {str(out)!r}, small_collect(episodes=2, seed_start=10), beta={BETA}, round_index=1)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list((out / "shards").glob("*.npz")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert len(list((out / "shards").glob("*.npz"))) == 1  # really half-way
    # what a kill inside an atomic write leaves (the kill above may or may not have landed in one)
    (out / ".index.json.0123456789ab.tmp").write_bytes(b"")
    (out / "shards" / ".merge-0000011.npz.0123456789ab.tmp").write_bytes(b"half a shard")
    collect_round(learner, out, small_collect(episodes=2, seed_start=10), beta=BETA, round_index=1)
    assert files(out) == files(root / "r1")  # byte for byte, index included
    with pytest.raises(ValueError, match="expected a dataset collected with this config"):
        collect_round(learner, out, small_collect(episodes=2, seed_start=10), beta=0.9, round_index=1)


def test_episode_outcomes_of_the_round_are_recorded(round_one):
    root, _ = round_one
    import json

    index = json.loads((root / "r1" / "index.json").read_text())
    assert index["kind"] == "on_policy" and index["config"]["beta"] == BETA
    assert all(e["outcome"] in ("completed", "collision", "offroad", "timeout") for e in index["episodes"])
    assert index["num_samples"] == sum(e["samples"] for e in index["episodes"]) > 0
    assert np.isfinite([e["route_completion"] for e in index["episodes"]]).all()
