"""Plane geometry shared by the world, sensors, labels and the expert (numpy, float64).

Frames. highway-env's world frame is drawn on screen with y pointing down, so what its renderer and its
own vocabulary call "left" (LANE_LEFT, the left turn at the intersection) is a clockwise turn in the
world's (x, y). Everything in this package first maps world coordinates into the *display frame*
(x, -y), heading -h: a right-handed frame in which the picture on screen is the picture in the maths,
so "left" is counter-clockwise. The ego frame is then the display frame rotated onto the ego:
x forward, y left, metres (the convention of `automot.spec`).

Axes: N points, M polyline vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_FLIP = np.array([1.0, -1.0])


def world_to_display(points: np.ndarray) -> np.ndarray:
    """(..., 2) highway-env world positions -> display frame."""
    return np.asarray(points, dtype=np.float64) * _FLIP


def heading_to_display(heading: float | np.ndarray) -> float | np.ndarray:
    return -np.asarray(heading, dtype=np.float64) if isinstance(heading, np.ndarray) else -float(heading)


def wrap_angle(angle: float | np.ndarray) -> float | np.ndarray:
    """Wrap to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


@dataclass(frozen=True)
class Pose:
    """A pose in the display frame: position (x, y) and heading (rad, counter-clockwise from +x)."""

    x: float
    y: float
    heading: float

    @property
    def position(self) -> np.ndarray:
        return np.array([self.x, self.y])

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) display-frame points -> this pose's frame (x forward, y left)."""
        c, s = np.cos(self.heading), np.sin(self.heading)
        d = np.asarray(points, dtype=np.float64) - self.position
        return np.stack([d[..., 0] * c + d[..., 1] * s, -d[..., 0] * s + d[..., 1] * c], axis=-1)

    def to_display(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) points in this pose's frame -> display frame."""
        c, s = np.cos(self.heading), np.sin(self.heading)
        p = np.asarray(points, dtype=np.float64)
        return (
            np.stack([p[..., 0] * c - p[..., 1] * s, p[..., 0] * s + p[..., 1] * c], axis=-1) + self.position
        )

    def heading_to_local(self, heading: float | np.ndarray) -> float | np.ndarray:
        return wrap_angle(np.asarray(heading) - self.heading)


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """Oriented boxes (..., 5) = (x, y, heading, length, width) -> corners (..., 4, 2), counter-clockwise."""
    boxes = np.asarray(boxes, dtype=np.float64)
    x, y, h, length, width = (boxes[..., i] for i in range(5))
    c, s = np.cos(h), np.sin(h)
    fx, fy = c * length / 2, s * length / 2  # half-length along the heading
    lx, ly = -s * width / 2, c * width / 2  # half-width to the left
    corners = np.stack(
        [
            np.stack([x + fx - lx, y + fy - ly], -1),  # front right
            np.stack([x + fx + lx, y + fy + ly], -1),  # front left
            np.stack([x - fx + lx, y - fy + ly], -1),  # rear left
            np.stack([x - fx - lx, y - fy - ly], -1),  # rear right
        ],
        axis=-2,
    )
    return corners


def arc_length(polyline: np.ndarray) -> np.ndarray:
    """Cumulative arc length (M,) of a polyline (M, 2), starting at 0."""
    seg = np.linalg.norm(np.diff(polyline, axis=0), axis=-1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def interpolate_polyline(polyline: np.ndarray, s_query: np.ndarray, extrapolate: bool = True) -> np.ndarray:
    """Points at arc lengths `s_query` along `polyline` (M, 2); beyond the ends the end segments are extended
    (`extrapolate`) or the end points repeated."""
    polyline = np.asarray(polyline, dtype=np.float64)
    s_query = np.asarray(s_query, dtype=np.float64)
    if len(polyline) == 1:
        return np.repeat(polyline, len(np.atleast_1d(s_query)), axis=0).reshape(*s_query.shape, 2)
    s = arc_length(polyline)
    keep = np.concatenate([[True], np.diff(s) > 1e-9])  # drop repeated vertices: interp needs increasing s
    polyline, s = polyline[keep], s[keep]
    if len(polyline) == 1:
        return np.broadcast_to(polyline[0], (*s_query.shape, 2)).copy()
    out = np.stack([np.interp(s_query, s, polyline[:, k]) for k in range(2)], axis=-1)
    if extrapolate:
        for mask, (a, b), s_ref in (
            (s_query > s[-1], (polyline[-2], polyline[-1]), s[-1]),
            (s_query < 0.0, (polyline[0], polyline[1]), 0.0),
        ):
            if np.any(mask):
                direction = (b - a) / max(np.linalg.norm(b - a), 1e-9)
                anchor = b if s_ref > 0 else a
                out[mask] = anchor + (s_query[mask] - s_ref)[:, None] * direction
    return out


@dataclass
class Projection:
    """Points projected onto a polyline: arc length `s`, signed lateral offset `d` (left positive),
    tangent heading at the foot point."""

    s: np.ndarray
    d: np.ndarray
    heading: np.ndarray


def project_to_polyline(points: np.ndarray, polyline: np.ndarray) -> Projection:
    """Project (N, 2) points onto the nearest segment of a polyline (M >= 2, 2), vectorised over N x (M-1).

    Before the first vertex and after the last the end segments are extended, so `s` may be negative or
    beyond the length: callers decide what "ahead" and "behind" mean.
    """
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    polyline = np.asarray(polyline, dtype=np.float64)
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    seg_len = np.maximum(np.linalg.norm(ab, axis=-1), 1e-9)
    t_raw = np.einsum("nmk,mk->nm", points[:, None, :] - a[None], ab) / seg_len**2
    lo = np.zeros_like(t_raw)
    hi = np.ones_like(t_raw)
    lo[:, 0] = -np.inf  # extend the first segment backwards
    hi[:, -1] = np.inf  # and the last one forwards
    t = np.clip(t_raw, lo, hi)
    foot = a[None] + t[..., None] * ab[None]
    dist = np.linalg.norm(points[:, None, :] - foot, axis=-1)
    idx = np.argmin(dist, axis=1)
    rows = np.arange(len(points))
    s0 = arc_length(polyline)[:-1]
    t_best = t[rows, idx]
    s = s0[idx] + t_best * seg_len[idx]
    tangent = ab[idx] / seg_len[idx][:, None]
    rel = points - foot[rows, idx]
    d = tangent[:, 0] * rel[:, 1] - tangent[:, 1] * rel[:, 0]
    return Projection(s=s, d=d, heading=np.arctan2(tangent[:, 1], tangent[:, 0]))


def resample_polyline(polyline: np.ndarray, spacing: float, count: int, start: float = 0.0) -> np.ndarray:
    """`count` points at arc lengths start + spacing, start + 2 spacing, ... (extrapolating past the end)."""
    return interpolate_polyline(polyline, start + spacing * np.arange(1, count + 1))


def polyline_curvature(polyline: np.ndarray) -> np.ndarray:
    """Unsigned curvature (M,) at the vertices of a polyline with roughly even spacing (ends copied)."""
    if len(polyline) < 3:
        return np.zeros(len(polyline))
    a, b, c = polyline[:-2], polyline[1:-1], polyline[2:]
    ab = np.linalg.norm(b - a, axis=-1)
    bc = np.linalg.norm(c - b, axis=-1)
    ac = np.linalg.norm(c - a, axis=-1)
    cross = np.abs((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0])
    k = 2.0 * cross / np.maximum(ab * bc * ac, 1e-9)  # circumscribed circle through three points
    return np.concatenate([[k[0]], k, [k[-1]]])
