"""The RGB camera: highway-env's rendered frame (offscreen SDL), resized and optionally turned to the ego.

highway-env renders a top view aligned with the world and centred on the ego. With
`CameraConfig.ego_aligned` the frame is resampled (bilinear) so the ego points up, like a camera fixed
to the car; otherwise it is area-downsampled as is. Output (3, H, W) uint8.
"""

from __future__ import annotations

import math

import numpy as np

from driving.config import CameraConfig
from driving.geometry import Pose


class Camera:
    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        self.size = self.render_size(config)
        self.scaling = self.pixels_per_metre(config)
        c = config
        x = c.ahead_m - (np.arange(c.height) + 0.5) * (c.ahead_m + c.behind_m) / c.height
        y = c.side_m - (np.arange(c.width) + 0.5) * (2 * c.side_m) / c.width
        self._grid = np.stack(np.meshgrid(x, y, indexing="ij"), axis=-1)  # (H, W, 2) ego frame

    @staticmethod
    def pixels_per_metre(c: CameraConfig) -> float:
        return c.supersample * max(c.height / (c.ahead_m + c.behind_m), c.width / (2 * c.side_m))

    @classmethod
    def render_size(cls, c: CameraConfig) -> tuple[int, int]:
        """(width, height) of the highway-env frame to render."""
        if c.ego_aligned:
            # A square around the ego large enough for the rotated view.
            radius = math.hypot(max(c.ahead_m, c.behind_m), c.side_m)
            side = math.ceil(2 * radius * cls.pixels_per_metre(c)) + 2
            return side, side
        return c.width * c.supersample, c.height * c.supersample

    @classmethod
    def env_config(cls, c: CameraConfig) -> dict:
        width, height = cls.render_size(c)
        return {
            "screen_width": width,
            "screen_height": height,
            "scaling": cls.pixels_per_metre(c),
            "centering_position": [0.5, 0.5],
            "offscreen_rendering": True,
        }

    def capture(self, env, ego: Pose) -> np.ndarray:
        frame = env.render()  # (Hr, Wr, 3) uint8, world-aligned, ego at the centre
        if frame is None:
            raise ValueError("camera: expected highway-env to render an rgb_array frame, got None")
        return self.from_frame(frame, ego)

    def from_frame(self, frame: np.ndarray, ego: Pose) -> np.ndarray:
        c = self.config
        if not c.ego_aligned:
            h, w, k = c.height, c.width, c.supersample
            small = frame[: h * k, : w * k].reshape(h, k, w, k, 3).mean(axis=(1, 3))
            return np.ascontiguousarray(np.round(small).astype(np.uint8).transpose(2, 0, 1))
        # Ego-frame grid -> display-frame offsets -> screen pixels (screen y points down = display -y).
        cos, sin = math.cos(ego.heading), math.sin(ego.heading)
        gx, gy = self._grid[..., 0], self._grid[..., 1]
        dx = gx * cos - gy * sin
        dy = gx * sin + gy * cos
        hr, wr = frame.shape[:2]
        col = dx * self.scaling + wr / 2 - 0.5
        row = -dy * self.scaling + hr / 2 - 0.5
        return np.ascontiguousarray(_bilinear(frame, row, col).transpose(2, 0, 1))


def _bilinear(image: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Sample (H, W, 3) uint8 at float pixel centres (edge pixels repeat outside)."""
    h, w = image.shape[:2]
    r0 = np.clip(np.floor(row).astype(int), 0, h - 1)
    c0 = np.clip(np.floor(col).astype(int), 0, w - 1)
    r1 = np.clip(r0 + 1, 0, h - 1)
    c1 = np.clip(c0 + 1, 0, w - 1)
    fr = np.clip(row - np.floor(row), 0.0, 1.0)[..., None]
    fc = np.clip(col - np.floor(col), 0.0, 1.0)[..., None]
    img = image.astype(np.float32)
    top = img[r0, c0] * (1 - fc) + img[r0, c1] * fc
    bottom = img[r1, c0] * (1 - fc) + img[r1, c1] * fc
    return np.round(top * (1 - fr) + bottom * fr).astype(np.uint8)
