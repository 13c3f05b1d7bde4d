"""The other vehicles' turn signals (`driving.signals`, `BEVConfig.turn_signals`): they tell what the
vehicles then do, they show in the BEV only, and a dataset / policy carries the setting."""

from __future__ import annotations

import collections
import json
from types import SimpleNamespace

import numpy as np
import pytest

from driving.closed_loop import run_episode
from driving.collect import CollectConfig
from driving.config import BEVConfig, SensorConfig
from driving.controller import Tracker
from driving.dataset import DrivingDataset, index_turn_signals
from driving.expert import ExpertPolicy
from driving.geometry import wrap_angle
from driving.scenarios import split_seeds
from driving.sensors.observation import render_bev
from driving.signals import BLINKER_LENGTH_M, BLINKER_WIDTH_M, blinker_box, signal_side
from driving.world import World
from tests.helpers import fit_one_step


class _Recorder(ExpertPolicy):
    """The expert, also logging every other vehicle's (time, signal, heading) at each step."""

    def reset(self, episode) -> None:
        super().reset(episode)
        self.log = collections.defaultdict(list)

    def plan(self, observation):
        network = self.world.env.road.network
        for v in self.world.env.road.vehicles:
            if v is not self.world.env.vehicle:
                # keyed by the object itself: the ids of removed cars get reused
                self.log[v].append((self.world.time_s, signal_side(v, network), float(v.heading)))
        return super().plan(observation)


def test_a_signal_tells_which_way_the_car_turns_and_every_turn_is_signalled():
    """Against what the vehicles then do (their heading over the next seconds): at the intersection
    no vehicle turns against its signal, and none turns by more than 60 degrees within 3 s unsignalled."""
    signalled = 0
    for seed in split_seeds("val", 2):
        policy = _Recorder()
        run_episode(policy, World("intersection"), seed, Tracker())
        for rows in policy.log.values():
            for t, side, heading in rows:
                turn = [wrap_angle(h - heading) for tt, _, h in rows if t < tt <= t + 6.0]
                soon = [wrap_angle(h - heading) for tt, _, h in rows if t < tt <= t + 3.0]
                if side:
                    signalled += 1
                    assert all(d * side > -np.deg2rad(30) for d in turn), (t, side, turn)
                else:
                    assert all(abs(d) <= np.deg2rad(60) for d in soon), (t, soon)
    assert signalled > 50  # the cars at the junction do signal


def test_nothing_signals_on_the_highway():
    policy = _Recorder()
    run_episode(
        policy, World("highway", sensors=SensorConfig(bev=BEVConfig(turn_signals=True))), 0, Tracker()
    )
    assert all(side == 0 for rows in policy.log.values() for _, side, _ in rows)


def test_the_blinker_sits_beside_the_front_corner_on_the_turning_side():
    # heading 0 in highway-env's world frame (x right, y down), length 5, width 2, at (10, 3)
    car = SimpleNamespace(position=np.array([10.0, 3.0]), heading=0.0, LENGTH=5.0, WIDTH=2.0)
    for side in (1, -1):
        x, y, heading, length, width = blinker_box(car, side)
        # along: front edge flush with the car's (2.5 - 1.0); across: outside the car's half width
        assert x == pytest.approx(10.0 + 2.5 - BLINKER_LENGTH_M / 2)
        assert -y == pytest.approx(3.0 + side * (1.0 + BLINKER_WIDTH_M / 2))  # display y = -world y
        assert (heading, length, width) == (0.0, BLINKER_LENGTH_M, BLINKER_WIDTH_M)


def _drive(turn_signals: bool, seed: int) -> World:
    world = World("intersection", sensors=SensorConfig(bev=BEVConfig(turn_signals=turn_signals)))
    run_episode(ExpertPolicy(), world, seed, Tracker())
    return world


def test_blinkers_show_in_the_bev_vehicle_channel_only_and_change_nothing_else():
    seed = split_seeds("train", 1)[0]
    plain, signals = _drive(False, seed), _drive(True, seed)
    assert len(plain.log) == len(signals.log)
    more = 0
    for i, (a, b) in enumerate(zip(plain.log, signals.log)):
        # the world and everything labelled from it are the same; only the blinkers are added
        np.testing.assert_array_equal(a.objects.boxes, b.objects.boxes)
        assert len(a.objects.signal_boxes) == 0
        bev_a, bev_b = render_bev(plain, i), render_bev(signals, i)
        np.testing.assert_array_equal(np.delete(bev_a, 2, 0), np.delete(bev_b, 2, 0))
        assert (bev_b[2] >= bev_a[2]).all()  # blinkers only add vehicle cells
        more += int((bev_b[2] > bev_a[2]).any())
    assert more >= 5  # and they do show at some steps


def _signals_copy(src, dst):
    """`src` declared as collected with blinkers (the same shards; the index says so)."""
    dst.mkdir()
    index = json.loads((src / "index.json").read_text())
    index["config"]["sensors"]["bev"]["turn_signals"] = True
    (dst / "index.json").write_text(json.dumps(index))
    (dst / "shards").symlink_to(src / "shards")
    return dst


def test_config_and_index_carry_the_setting_and_old_folders_keep_their_hash():
    plain = CollectConfig(scenarios=["intersection"], episodes=1)
    assert "turn_signals" not in plain.to_json()["sensors"]["bev"]  # the hash of old collections holds
    assert index_turn_signals({"config": plain.to_json()}) is False
    on = CollectConfig(scenarios=["intersection"], episodes=1, sensors={"bev": {"turn_signals": True}})
    assert index_turn_signals({"config": on.to_json()}) is True
    assert index_turn_signals({"config": {"collect": on.to_json()}}) is True  # an on-policy round's index
    with pytest.raises(ValueError, match=r"BEVConfig\.turn_signals: expected a bool"):
        BEVConfig(turn_signals="yes")


def test_a_dataset_refuses_directories_with_and_without_blinkers(tiny_dataset, tmp_path):
    copy = _signals_copy(tiny_dataset / "val", tmp_path / "signals")
    assert DrivingDataset(copy).turn_signals is True
    assert DrivingDataset(tiny_dataset / "val").turn_signals is False
    with pytest.raises(
        ValueError, match=r"expected sensors\.bev\.turn_signals=False like the first directory"
    ):
        DrivingDataset([tiny_dataset / "val", copy])


def test_a_policy_carries_what_its_data_showed_into_evaluation_and_fine_tuning(tiny_dataset, tmp_path):
    from mot.checkpoint import saved_sensor_options
    from training.cli import _eval_config
    from training.policy import BackboneSpec, load_pretrained
    from training.stages import ActionExpertStage

    train = _signals_copy(tiny_dataset / "val", tmp_path / "train")

    stage = ActionExpertStage(backbone=BackboneSpec(preset="tiny"), export_dir=str(tmp_path / "p"))
    fit_one_step(stage, train)
    assert saved_sensor_options(tmp_path / "p") == {"turn_signals": True}
    backbone = load_pretrained(tmp_path / "p")
    assert backbone.ae.sensor_options == {"turn_signals": True}
    assert _eval_config(backbone).sensors.bev.turn_signals is True  # `automot eval` drives with blinkers
    # fine-tuning it on data without blinkers is refused, naming both
    tuned = ActionExpertStage(backbone=BackboneSpec(init_from=str(tmp_path / "p")))
    with pytest.raises(ValueError, match="turn_signals=True as the policy was trained with, got False"):
        fit_one_step(tuned, tiny_dataset / "val")


def test_collect_cli_writes_blinkers_into_the_bev(tmp_path):
    from automot.cli import main
    from driving.shards import read_shard

    args = [
        "collect",
        "--scenarios",
        "intersection",
        "--episodes",
        "1",
        "--duration",
        "8",
        "--image-size",
        "16",
    ]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--turn-signals", "--out", str(tmp_path / "signals")]) == 0
    plain, signals = DrivingDataset(tmp_path / "plain"), DrivingDataset(tmp_path / "signals")
    assert (plain.turn_signals, signals.turn_signals) == (False, True)
    shard = sorted((tmp_path / "plain" / "shards").glob("*.npz"))[0].name
    a = read_shard(tmp_path / "plain" / "shards" / shard)
    b = read_shard(tmp_path / "signals" / "shards" / shard)
    np.testing.assert_array_equal(a["waypoints"], b["waypoints"])  # the same labels
    np.testing.assert_array_equal(np.delete(a["bev"], 2, 1), np.delete(b["bev"], 2, 1))
    assert (b["bev"][:, 2] >= a["bev"][:, 2]).all() and (b["bev"][:, 2] > a["bev"][:, 2]).any()
