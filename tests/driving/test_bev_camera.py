"""BEV raster and camera: known boxes and map features land on the expected cells, rotated correctly."""

import math

import numpy as np
import pytest

from driving.config import BEVConfig, CameraConfig
from driving.geometry import Pose, box_corners
from driving.sensors.bev import BEVRasterizer, bev_cell_centres, rasterize_boxes
from driving.sensors.camera import Camera
from driving.world import World

CFG = BEVConfig(ahead_m=8.0, behind_m=4.0, side_m=6.0, resolution_m=1.0)  # 12 x 12 cells


def cells(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in zip(*np.nonzero(mask))}


def test_axis_aligned_box_hits_hand_computed_cells():
    # Box centred 3 m ahead, 1 m to the left, 4 m long (x in [1, 5]) and 2 m wide (y in [0, 2]).
    # Row i has centre x = 8 - (i + 0.5): x in [1, 5] -> rows 3..6; column j has y = 6 - (j + 0.5):
    # y in [0, 2] -> columns 4, 5.
    mask = rasterize_boxes(np.array([[3.0, 1.0, 0.0, 4.0, 2.0]]), CFG)
    assert mask.shape == (12, 12)
    assert cells(mask) == {(i, j) for i in range(3, 7) for j in (4, 5)}


def test_box_rotated_90_degrees_swaps_its_footprint():
    # Heading +90 deg (pointing left): 4 m along y (y in [-1, 3]), 2 m along x (x in [2, 4]).
    mask = rasterize_boxes(np.array([[3.0, 1.0, math.pi / 2, 4.0, 2.0]]), CFG)
    # x in [2, 4] -> rows 4, 5; y in [-1, 3] -> columns 3..6 (y = 2.5, 1.5, 0.5, -0.5).
    assert cells(mask) == {(i, j) for i in (4, 5) for j in range(3, 7)}


def test_oblique_box_matches_an_independent_point_in_polygon_oracle():
    box = np.array([2.3, -0.7, math.radians(33.0), 5.0, 2.0])
    mask = rasterize_boxes(box[None], CFG)
    corners = box_corners(box)  # counter-clockwise
    expected = set()
    centres = bev_cell_centres(CFG)
    for i in range(CFG.height):
        for j in range(CFG.width):
            p = centres[i, j]
            inside = all(
                (corners[(k + 1) % 4][0] - corners[k][0]) * (p[1] - corners[k][1])
                - (corners[(k + 1) % 4][1] - corners[k][1]) * (p[0] - corners[k][0])
                >= 0
                for k in range(4)
            )
            if inside:
                expected.add((i, j))
    assert len(expected) > 6
    assert cells(mask) == expected


def test_boxes_outside_the_raster_are_clipped_not_wrapped():
    mask = rasterize_boxes(np.array([[30.0, 0.0, 0.0, 4.0, 2.0], [7.5, 5.5, 0.0, 3.0, 3.0]]), CFG)
    # Only the corner box overlaps: x in [6, 9] -> rows 0, 1; y in [4, 7] -> columns 0, 1.
    assert cells(mask) == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.fixture(scope="module")
def highway_world():
    world = World("highway")
    world.reset(0)
    yield world
    world.close()


def test_map_layers_follow_the_ego_heading(highway_world):
    """On a straight 3-lane road the drivable area is 12 m wide across the ego's heading."""
    w = highway_world
    rast = BEVRasterizer(BEVConfig())
    rast.set_map(w.env.road.network, w.route)
    lane = w.env.road.network.get_lane(("0", "1", 1))  # the middle lane
    centre = lane.position(300.0, 0.0) * np.array([1.0, -1.0])
    along = rast.render(Pose(centre[0], centre[1], 0.0), np.zeros((0, 5)))[0]
    # Columns j have y = 32 - (j + 0.5): |y| <= 6 (three 4 m lanes around the middle one) -> j = 26..37.
    assert set(np.nonzero(along.any(axis=0))[0]) == set(range(26, 38))
    assert along[:, 26:38].all()
    across = rast.render(Pose(centre[0], centre[1], math.pi / 2), np.zeros((0, 5)))[0]
    # Heading 90 deg: the road runs left-right, rows i have x = 48 - (i + 0.5): |x| <= 6 -> i = 42..53.
    assert set(np.nonzero(across.any(axis=1))[0]) == set(range(42, 54))


def test_world_bev_vehicle_channel_matches_logged_boxes(highway_world):
    w = highway_world
    state = w.log[-1]
    bev = w.bev.render(state.ego, state.objects.boxes)
    local = state.objects.boxes.copy()
    local[:, :2] = state.ego.to_local(local[:, :2])
    local[:, 2] = state.ego.heading_to_local(local[:, 2])
    assert np.array_equal(bev[2], rasterize_boxes(local, w.sensors.bev))
    assert bev[2].sum() > 0  # traffic ahead is in view


def test_ego_aligned_camera_puts_a_world_marker_at_its_ego_frame_position():
    config = CameraConfig(height=32, width=32, ahead_m=16.0, behind_m=16.0, side_m=16.0, supersample=2)
    cam = Camera(config)
    size, _ = cam.render_size(config)
    frame = np.zeros((size, size, 3), dtype=np.uint8)
    # A marker 8 m ahead of an ego heading 90 deg (display frame): display offset (0, +8) -> screen row up.
    heading = math.pi / 2
    row = round(size / 2 - 8.0 * cam.scaling)
    col = round(size / 2)
    frame[row - 2 : row + 3, col - 2 : col + 3] = 255
    image = cam.from_frame(frame, Pose(0.0, 0.0, heading))
    i, j = np.unravel_index(np.argmax(image[0]), image[0].shape)
    # Ego frame x = 8 (forward), y = 0 -> output row (16 - 8) / 1 = 8, column 16 (32 px over 32 m).
    assert abs(i - 7.5) <= 1.0 and abs(j - 15.5) <= 1.0
