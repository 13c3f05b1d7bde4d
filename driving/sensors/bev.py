"""The BEV raster, the world's stand-in for a LiDAR BEV (channels `automot.spec.BEV_CHANNELS`).

Layout: (C, H, W) float32 in {0, 1}, ego frame, x forward = up (row 0 is `ahead_m` ahead), y left =
left (column 0 is `side_m` to the left). Cell (i, j) covers the square whose centre is
x = ahead_m - (i + 0.5) * res, y = side_m - (j + 0.5) * res; a cell is set when its centre is inside.

The map layers (drivable area, lane lines, route) are static, so they are rasterised once per map at
half the BEV resolution in the display frame and looked up per step; vehicles are oriented boxes
tested exactly against the cell centres every step (their footprints, not their centre cells).
"""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import numpy as np
from highway_env.road.lane import LineType

from automot import spec
from driving.config import BEVConfig
from driving.drivable import inside_polygon, junction_patches
from driving.geometry import Pose, box_corners
from driving.sensors.lanes import iter_lanes, lane_coordinates, lane_outline

CHANNEL = {name: i for i, name in enumerate(spec.BEV_CHANNELS)}
# highway-env's dashes: a 3 m stripe every 4.33 m.
STRIPE_SPACING_M = 4.33
STRIPE_LENGTH_M = 3.0


def bev_cell_centres(config: BEVConfig) -> np.ndarray:
    """Ego-frame (x, y) of every cell centre, (H, W, 2)."""
    res = config.resolution_m
    x = config.ahead_m - (np.arange(config.height) + 0.5) * res
    y = config.side_m - (np.arange(config.width) + 0.5) * res
    return np.stack(np.meshgrid(x, y, indexing="ij"), axis=-1)


def rasterize_boxes(boxes: np.ndarray, config: BEVConfig) -> np.ndarray:
    """Oriented boxes (N, 5) = (x, y, heading, length, width) in the ego frame -> (H, W) float32 mask of
    the cells whose centre lies inside a box (boundary inclusive)."""
    out = np.zeros((config.height, config.width), dtype=np.float32)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if len(boxes) == 0:
        return out
    res = config.resolution_m
    corners = box_corners(boxes)  # (N, 4, 2)
    # Cell index ranges covered by each box's axis-aligned bounds.
    rows_lo = np.floor((config.ahead_m - corners[..., 0].max(1)) / res).astype(int)
    rows_hi = np.ceil((config.ahead_m - corners[..., 0].min(1)) / res).astype(int)
    cols_lo = np.floor((config.side_m - corners[..., 1].max(1)) / res).astype(int)
    cols_hi = np.ceil((config.side_m - corners[..., 1].min(1)) / res).astype(int)
    for k in range(len(boxes)):
        r0, r1 = max(rows_lo[k], 0), min(rows_hi[k], config.height)
        c0, c1 = max(cols_lo[k], 0), min(cols_hi[k], config.width)
        if r0 >= r1 or c0 >= c1:
            continue
        xs = config.ahead_m - (np.arange(r0, r1) + 0.5) * res
        ys = config.side_m - (np.arange(c0, c1) + 0.5) * res
        x, y, h, length, width = boxes[k]
        dx, dy = xs[:, None] - x, ys[None, :] - y
        c, s = np.cos(h), np.sin(h)
        along = dx * c + dy * s
        across = -dx * s + dy * c
        inside = (np.abs(along) <= length / 2 + 1e-9) & (np.abs(across) <= width / 2 + 1e-9)
        out[r0:r1, c0:c1] = np.maximum(out[r0:r1, c0:c1], inside)
    return out


class _MapLayers:
    """Static map layers in the display frame at resolution `res` (rows go down = display y decreasing)."""

    def __init__(self, network, res: float, line_width: float) -> None:
        lanes = list(iter_lanes(network))
        outline = np.concatenate([lane_outline(lane, margin_m=line_width) for _, lane in lanes])
        disp = outline * np.array([1.0, -1.0])
        self.res = res
        self.x0 = float(disp[:, 0].min()) - 2 * res
        self.y1 = float(disp[:, 1].max()) + 2 * res
        self.height = int(np.ceil((self.y1 - disp[:, 1].min()) / res)) + 4
        self.width = int(np.ceil((disp[:, 0].max() - self.x0) / res)) + 4
        self.drivable = np.zeros((self.height, self.width), dtype=bool)
        self.lines = np.zeros((self.height, self.width), dtype=bool)
        self._line_width = line_width
        for _, lane in lanes:
            self._paint_lane(lane, self.drivable, lines=self.lines)
        for patch in junction_patches(network):
            self._paint_polygon(patch, self.drivable)

    def _window(self, lane, margin: float):
        """Row/col ranges of a lane's bounding box and the world points of those cell centres."""
        disp = lane_outline(lane, margin_m=margin) * np.array([1.0, -1.0])
        r0 = max(int(np.floor((self.y1 - disp[:, 1].max()) / self.res)) - 1, 0)
        r1 = min(int(np.ceil((self.y1 - disp[:, 1].min()) / self.res)) + 1, self.height)
        c0 = max(int(np.floor((disp[:, 0].min() - self.x0) / self.res)) - 1, 0)
        c1 = min(int(np.ceil((disp[:, 0].max() - self.x0) / self.res)) + 1, self.width)
        xs = self.x0 + (np.arange(c0, c1) + 0.5) * self.res
        ys = self.y1 - (np.arange(r0, r1) + 0.5) * self.res
        gx, gy = np.meshgrid(xs, ys)
        world = np.stack([gx.ravel(), -gy.ravel()], axis=-1)
        return (r0, r1, c0, c1), world

    def _paint_lane(self, lane, area: np.ndarray, lines: np.ndarray | None = None) -> None:
        (r0, r1, c0, c1), world = self._window(lane, self._line_width)
        s, r = lane_coordinates(lane, world)
        half = lane.width_at(0.0) / 2  # constant for the lane types supported by `lane_coordinates`
        along = (s >= 0.0) & (s <= lane.length)
        shape = (r1 - r0, c1 - c0)
        area[r0:r1, c0:c1] |= (along & (np.abs(r) <= half)).reshape(shape)
        if lines is None:
            return
        for side, offset in ((0, -half), (1, half)):
            kind = lane.line_types[side]
            if kind == LineType.NONE:
                continue
            on = along & (np.abs(r - offset) <= self._line_width / 2)
            if kind == LineType.STRIPED:
                on &= np.mod(s, STRIPE_SPACING_M) < STRIPE_LENGTH_M
            lines[r0:r1, c0:c1] |= on.reshape(shape)

    def _paint_polygon(self, polygon: np.ndarray, layer: np.ndarray) -> None:
        """Set the cells whose centre is inside a convex world-frame polygon."""
        disp = polygon * np.array([1.0, -1.0])
        r0 = max(int(np.floor((self.y1 - disp[:, 1].max()) / self.res)), 0)
        r1 = min(int(np.ceil((self.y1 - disp[:, 1].min()) / self.res)) + 1, self.height)
        c0 = max(int(np.floor((disp[:, 0].min() - self.x0) / self.res)), 0)
        c1 = min(int(np.ceil((disp[:, 0].max() - self.x0) / self.res)) + 1, self.width)
        if r0 >= r1 or c0 >= c1:
            return
        xs = self.x0 + (np.arange(c0, c1) + 0.5) * self.res
        ys = self.y1 - (np.arange(r0, r1) + 0.5) * self.res
        gx, gy = np.meshgrid(xs, ys)
        world = np.stack([gx.ravel(), -gy.ravel()], axis=-1)
        layer[r0:r1, c0:c1] |= inside_polygon(world, polygon).reshape(r1 - r0, c1 - c0)

    def paint_route(self, network, lane_indices) -> np.ndarray:
        route = np.zeros_like(self.drivable)
        for index in lane_indices:
            self._paint_lane(network.get_lane(index), route)
        return route

    def sample(self, layer: np.ndarray, display_points: np.ndarray) -> np.ndarray:
        rows = np.floor((self.y1 - display_points[..., 1]) / self.res).astype(int)
        cols = np.floor((display_points[..., 0] - self.x0) / self.res).astype(int)
        valid = (rows >= 0) & (rows < self.height) & (cols >= 0) & (cols < self.width)
        out = np.zeros(rows.shape, dtype=np.float32)
        out[valid] = layer[rows[valid], cols[valid]]
        return out


def _network_key(network) -> str:
    lanes = [(index, lane.to_config()) for index, lane in iter_lanes(network)]
    return hashlib.sha1(json.dumps(lanes, sort_keys=True, default=str).encode()).hexdigest()


class BEVRasterizer:
    """Rasterises the BEV for a map; map layers are cached per road geometry (identical across seeds)."""

    _cache: ClassVar[dict[tuple, _MapLayers]] = {}
    _route_cache: ClassVar[dict[tuple, np.ndarray]] = {}

    def __init__(self, config: BEVConfig) -> None:
        self.config = config
        self._cells = bev_cell_centres(config)
        self.layers: _MapLayers | None = None
        self.route_layer: np.ndarray | None = None

    def set_map(self, network, route) -> None:
        res = self.config.resolution_m
        key = (_network_key(network), res)
        if key not in self._cache:
            self._cache[key] = _MapLayers(network, res=res / 2, line_width=res)
        self.layers = self._cache[key]
        route_lanes = []
        for a, b in route.edges:
            for i, lane in enumerate(network.graph[a][b]):
                if not lane.forbidden or i == route.lanes[route.edges.index((a, b))]:
                    route_lanes.append((a, b, i))
        route_key = (*key, tuple(route_lanes))
        if route_key not in self._route_cache:
            self._route_cache[route_key] = self.layers.paint_route(network, route_lanes)
        self.route_layer = self._route_cache[route_key]

    def render(self, ego: Pose, boxes: np.ndarray) -> np.ndarray:
        """BEV (C, H, W) float32 for the ego pose and the other objects' boxes (K, 5), display frame."""
        if self.layers is None:
            raise ValueError("BEVRasterizer.render: expected set_map() to be called first, got no map")
        points = ego.to_display(self._cells)
        bev = np.zeros((len(spec.BEV_CHANNELS), self.config.height, self.config.width), dtype=np.float32)
        bev[CHANNEL["drivable"]] = self.layers.sample(self.layers.drivable, points)
        bev[CHANNEL["lane_lines"]] = self.layers.sample(self.layers.lines, points)
        bev[CHANNEL["route"]] = self.layers.sample(self.route_layer, points)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
        if len(boxes):
            local = boxes.copy()
            local[:, :2] = ego.to_local(boxes[:, :2])
            local[:, 2] = ego.heading_to_local(boxes[:, 2])
            bev[CHANNEL["vehicles"]] = rasterize_boxes(local, self.config)
        return bev
