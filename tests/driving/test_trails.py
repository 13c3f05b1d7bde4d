"""The other vehicles' motion trails in the BEV (`BEVConfig.vehicle_trail_s`): past footprints in the
current ego frame, in the vehicles channel only; a dataset and a policy carry the setting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from driving.closed_loop import run_episode
from driving.collect import CollectConfig
from driving.config import BEVConfig, SensorConfig, SimConfig
from driving.controller import Tracker
from driving.dataset import DrivingDataset, index_bev_options
from driving.expert import ExpertPolicy
from driving.scenarios import split_seeds
from driving.sensors.observation import render_bev
from driving.world import World
from tests.helpers import fit_one_step

TRAIL_S = 0.75  # three policy steps at 4 Hz


def _drive(trail_s: float, seed: int) -> World:
    world = World("intersection", sensors=SensorConfig(bev=BEVConfig(vehicle_trail_s=trail_s)))
    run_episode(ExpertPolicy(), world, seed, Tracker())
    return world


@pytest.fixture(scope="module")
def worlds():
    seed = split_seeds("train", 1)[0]
    return _drive(0.0, seed), _drive(TRAIL_S, seed)


def test_trails_are_the_union_of_past_footprints_in_the_vehicles_channel_only(worlds):
    plain, trails = worlds
    assert len(plain.log) == len(trails.log)
    steps = SimConfig().steps(TRAIL_S)
    longer = 0
    for i, (a, b) in enumerate(zip(plain.log, trails.log)):
        np.testing.assert_array_equal(a.objects.boxes, b.objects.boxes)  # the world is the same
        bev_a, bev_b = render_bev(plain, i), render_bev(trails, i)
        np.testing.assert_array_equal(np.delete(bev_a, 2, 0), np.delete(bev_b, 2, 0))
        # oracle: the plain vehicles channel of every step in the trail, each object's footprint then
        # drawn in the ego frame of step i (static objects are drawn at their one place), maxed
        expected = bev_a[2].copy()
        for j in range(max(i - steps, 0), i):
            past = plain.log[j].objects
            moving = past.boxes[~past.static]
            expected = np.maximum(expected, plain.bev.render(a.ego, moving)[2])
        np.testing.assert_array_equal(bev_b[2], expected)
        longer += int((bev_b[2] > bev_a[2]).any())
    assert longer >= 10  # the crossing traffic moves: its trails show at many steps


def test_a_trail_is_as_long_as_the_road_covered_and_a_parked_car_has_none():
    """A vehicle driving straight ahead of the ego at 8 m/s: its streak is 8 m/s x trail_s longer than
    its 5 m box; a static object beside it stays a plain box (hand-built log, ego at rest)."""
    from types import SimpleNamespace

    from driving.geometry import Pose
    from driving.sensors.bev import BEVRasterizer
    from driving.world import ObjectState, StepState

    config = BEVConfig(vehicle_trail_s=TRAIL_S, resolution_m=0.5)
    raster = BEVRasterizer(config)
    raster.layers = SimpleNamespace(  # no map: empty map layers
        drivable=None, lines=None, sample=lambda layer, points: np.zeros(points.shape[:2], np.float32)
    )
    raster.route_layer = None
    dt = SimConfig().dt

    def state(k: int) -> StepState:
        boxes = np.array([[20.0 + 8.0 * dt * k, 0.0, 0.0, 5.0, 2.0], [10.0, 10.0, 0.0, 4.0, 2.0]])
        objects = ObjectState(
            ids=np.array([1, 2]), boxes=boxes, speeds=np.array([8.0, 0.0]), static=np.array([False, True])
        )
        return StepState(k, k * dt, Pose(0.0, 0.0, 0.0), 0.0, 0.0, 0.0, objects, 0.0, True)

    world = SimpleNamespace(bev=raster, sim=SimConfig(), log=[state(k) for k in range(6)])
    cells = lambda mask: np.argwhere(mask)  # noqa: E731
    for index, covered in ((5, 8.0 * TRAIL_S), (1, 8.0 * dt), (0, 0.0)):  # no trail before the start
        vehicles = render_bev(world, index)[2]
        mover = vehicles[:, vehicles.shape[1] // 2]  # the column on the ego's axis
        assert mover.sum() * config.resolution_m == pytest.approx(5.0 + covered, abs=config.resolution_m)
        parked = vehicles[:, : vehicles.shape[1] // 2 - 4]  # left of the axis (display y = left)
        rows = np.unique(cells(parked)[:, 0])
        assert len(rows) * config.resolution_m == pytest.approx(4.0, abs=config.resolution_m)


def test_the_setting_is_validated_at_the_boundary():
    with pytest.raises(ValueError, match=r"BEVConfig\.vehicle_trail_s: expected a value >= 0"):
        BEVConfig(vehicle_trail_s=-0.5)
    for bad in ("x", float("inf"), float("nan")):
        with pytest.raises(
            ValueError, match=r"BEVConfig\.vehicle_trail_s: expected a finite number of seconds"
        ):
            BEVConfig(vehicle_trail_s=bad)
    with pytest.raises(ValueError, match=r"vehicle_trail_s: expected a multiple of the policy step 0\.25 s"):
        World("highway", sensors=SensorConfig(bev=BEVConfig(vehicle_trail_s=0.3)))
    from studies.config import DataSpec

    with pytest.raises(ValueError, match=r"DataSpec\.vehicle_trail_s: .*got 0\.3"):
        DataSpec(vehicle_trail_s=0.3)


def _trails_copy(src, dst, trail_s: float = 0.5):
    """`src` declared as collected with motion trails (the same shards; the index says so)."""
    dst.mkdir()
    index = json.loads((src / "index.json").read_text())
    index["config"]["sensors"]["bev"]["vehicle_trail_s"] = trail_s
    (dst / "index.json").write_text(json.dumps(index))
    (dst / "shards").symlink_to(src / "shards")
    return dst


def test_config_and_index_carry_the_setting_and_old_folders_keep_their_hash(tiny_dataset, tmp_path):
    plain = CollectConfig(scenarios=["intersection"], episodes=1)
    assert "vehicle_trail_s" not in plain.to_json()["sensors"]["bev"]  # collections made before: same hash
    assert index_bev_options({"config": plain.to_json()}) == {"turn_signals": False, "vehicle_trail_s": 0.0}
    on = CollectConfig(scenarios=["intersection"], episodes=1, sensors={"bev": {"vehicle_trail_s": 0.5}})
    assert index_bev_options({"config": {"collect": on.to_json()}})["vehicle_trail_s"] == 0.5
    bad = {"config": {"sensors": {"bev": {"vehicle_trail_s": -1}}}}
    with pytest.raises(ValueError, match=r"dataset index: sensors\.bev: BEVConfig\.vehicle_trail_s"):
        index_bev_options(bad)
    # a dataset of directories with different trails is refused, naming both
    copy = _trails_copy(tiny_dataset / "val", tmp_path / "trails")
    assert DrivingDataset(copy).bev_options["vehicle_trail_s"] == 0.5
    with pytest.raises(
        ValueError, match=r"expected sensors\.bev\.vehicle_trail_s=0\.0 like the first directory, got 0\.5"
    ):
        DrivingDataset([tiny_dataset / "val", copy])


def test_a_policy_carries_its_trails_into_evaluation_dagger_and_fine_tuning(tiny_dataset, tmp_path):
    from mot.checkpoint import saved_sensor_options
    from training.cli import _eval_config
    from training.policy import BackboneSpec, load_pretrained
    from training.stages import ActionExpertStage

    train = _trails_copy(tiny_dataset / "val", tmp_path / "train")

    stage = ActionExpertStage(backbone=BackboneSpec(preset="tiny"), export_dir=str(tmp_path / "p"))
    fit_one_step(stage, train)
    assert saved_sensor_options(tmp_path / "p") == {"turn_signals": False, "vehicle_trail_s": 0.5}
    backbone = load_pretrained(tmp_path / "p")
    assert _eval_config(backbone).sensors.bev.vehicle_trail_s == 0.5  # `automot eval` draws the trails
    assert BEVConfig.from_options(saved_sensor_options(tmp_path / "p")).vehicle_trail_s == 0.5  # DAgger
    tuned = ActionExpertStage(backbone=BackboneSpec(init_from=str(tmp_path / "p")))
    with pytest.raises(ValueError, match=r"vehicle_trail_s=0\.5 as the policy was trained with, got 0\.0"):
        fit_one_step(tuned, tiny_dataset / "val")
    # a policy trained before trails existed (it records its blinkers only) had none
    plain = ActionExpertStage(backbone=BackboneSpec(preset="tiny"), export_dir=str(tmp_path / "q"))
    fit_one_step(plain, tiny_dataset / "val")
    assert saved_sensor_options(tmp_path / "q") == {"turn_signals": False}  # as before trails existed
    again = ActionExpertStage(backbone=BackboneSpec(init_from=str(tmp_path / "q")))
    with pytest.raises(ValueError, match=r"vehicle_trail_s=0\.0 as the policy was trained with, got 0\.5"):
        fit_one_step(again, train)


def test_collect_cli_writes_trails_into_the_bev_and_refuses_a_partial_step(tmp_path, capsys):
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
    assert main([*args, "--vehicle-trail", "0.5", "--out", str(tmp_path / "trails")]) == 0
    trails = DrivingDataset(tmp_path / "trails")
    assert trails.bev_options == {"turn_signals": False, "vehicle_trail_s": 0.5}
    shard = sorted((tmp_path / "plain" / "shards").glob("*.npz"))[0].name
    a = read_shard(tmp_path / "plain" / "shards" / shard)
    b = read_shard(tmp_path / "trails" / "shards" / shard)
    np.testing.assert_array_equal(a["waypoints"], b["waypoints"])  # the same labels
    np.testing.assert_array_equal(np.delete(a["bev"], 2, 1), np.delete(b["bev"], 2, 1))
    assert (b["bev"][:, 2] >= a["bev"][:, 2]).all() and (b["bev"][:, 2] > a["bev"][:, 2]).any()
    assert main([*args, "--vehicle-trail", "0.3", "--out", str(tmp_path / "bad")]) != 0
    assert "vehicle_trail_s: expected a multiple of the policy step 0.25 s" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "index.json").exists()
