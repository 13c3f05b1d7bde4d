"""Pictures of the data: a PNG of one sample (camera, RGB history, BEV with ground-truth and predicted
trajectories, the words) and a GIF of a closed-loop episode's camera frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from automot import spec

# BEV channel -> RGB colour in the composite.
_COLOURS = {
    "drivable": (0.25, 0.25, 0.25),
    "route": (0.15, 0.3, 0.55),
    "lane_lines": (0.9, 0.9, 0.9),
    "vehicles": (0.95, 0.3, 0.2),
}


def bev_to_rgb(bev: np.ndarray) -> np.ndarray:
    """(C, Hb, Wb) BEV -> (Hb, Wb, 3) float image, channels painted in a fixed order."""
    bev = np.asarray(bev, dtype=np.float32)
    img = np.zeros((*bev.shape[1:], 3), dtype=np.float32)
    for name in ("drivable", "route", "lane_lines", "vehicles"):
        layer = bev[spec.BEV_CHANNELS.index(name)][..., None]
        img = img * (1 - layer) + layer * np.array(_COLOURS[name], dtype=np.float32)
    return img


def _words(indices, vocabulary) -> str:
    return ", ".join(vocabulary[int(i)] for i in indices)


def plot_sample(
    sample: dict, path: str | Path, predicted: np.ndarray | None = None, bev_extent: tuple | None = None
) -> Path:
    """Save a PNG of a `DrivingDataset` sample. `predicted` (6, 2) ego-frame waypoints are drawn too.

    `bev_extent` = (ahead_m, behind_m, side_m) of the raster (defaults: the BEVConfig defaults)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from driving.config import BEVConfig

    if bev_extent is None:
        b = BEVConfig()
        bev_extent = (b.ahead_m, b.behind_m, b.side_m)
    ahead, behind, side = bev_extent
    arr = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in sample.items() if k != "meta"}
    fig = plt.figure(figsize=(12, 6.5))
    grid = fig.add_gridspec(2, 4, height_ratios=(3, 1))
    ax_cam = fig.add_subplot(grid[0, 0])
    ax_cam.imshow(np.asarray(arr["rgb"]).transpose(1, 2, 0))
    ax_cam.set_title("camera (action expert)")
    ax_cam.axis("off")
    ax_hist = fig.add_subplot(grid[0, 1])
    history = np.asarray(arr["rgb_history"])[:, 0]  # (T, 3, H, W), view 0
    ax_hist.imshow(np.concatenate(list(history.transpose(0, 2, 3, 1)), axis=0))
    ax_hist.set_title("RGB history (oldest on top)")
    ax_hist.axis("off")
    ax = fig.add_subplot(grid[0, 2:])
    # Ego frame drawn with x forward up and y left to the left: plot (-y, x).
    ax.imshow(bev_to_rgb(arr["bev"]), extent=(-side, side, -behind, ahead))
    boxes, mask = np.asarray(arr["agent_boxes"]), np.asarray(arr["agent_mask"])
    for k in range(boxes.shape[0]):
        for a in np.nonzero(mask[k])[0]:
            x, y, h, length, width = boxes[k, a]
            corners = _corners(x, y, h, length, width)
            ax.plot(-corners[:, 1], corners[:, 0], color=(1.0, 0.8, 0.3), alpha=0.15 + 0.1 * k, lw=0.8)
    route, wp = np.asarray(arr["route"]), np.asarray(arr["waypoints"])
    ax.plot(-route[:, 1], route[:, 0], ".", color="cyan", ms=4, label="route (GT)")
    ax.plot(-wp[:, 1], wp[:, 0], "o-", color="lime", ms=4, label="waypoints (GT)")
    if predicted is not None:
        p = np.asarray(predicted)
        ax.plot(-p[:, 1], p[:, 0], "x--", color="magenta", ms=5, label="predicted")
    tp = np.asarray(arr["target_point"])
    ax.plot(-tp[1], tp[0], "*", color="yellow", ms=12, label="target point")
    ego = _corners(0.0, 0.0, 0.0, *np.asarray(arr["ego_size"]))
    ax.fill(-ego[:, 1], ego[:, 0], color="gold")
    ax.set_xlim(-side, side)
    ax.set_ylim(-behind, ahead)
    ax.set_xticks([])
    ax.set_title("BEV (ego frame, forward up)")
    ax.legend(loc="lower right", fontsize=7)
    text = fig.add_subplot(grid[1, :])
    text.axis("off")
    meta = sample.get("meta", {})
    lines = [
        f"{meta.get('scenario', '?')}  seed {meta.get('seed', '?')}  step {meta.get('step', '?')}  (UE step {meta.get('ue_step', '?')})",
        f"prompt: {sample.get('prompt', '')}",
        f"scene: {sample.get('scene_text', '')}",
        f"lateral @1/2/3 s: {_words(arr['lateral'], spec.LATERAL_ACTIONS)}   longitudinal: "
        f"{_words(arr['longitudinal'], spec.LONGITUDINAL_ACTIONS)}   3-way: {_words(arr['longitudinal3'], spec.LONGITUDINAL_ACTIONS_3)}",
        f"ego state (v, a, yaw rate): {np.round(np.asarray(arr['ego_state'], dtype=float), 2).tolist()}",
    ]
    text.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _corners(x, y, h, length, width) -> np.ndarray:
    c, s = np.cos(h), np.sin(h)
    local = np.array(
        [
            [length / 2, width / 2],
            [length / 2, -width / 2],
            [-length / 2, -width / 2],
            [-length / 2, width / 2],
            [length / 2, width / 2],
        ]
    )
    return np.stack([x + local[:, 0] * c - local[:, 1] * s, y + local[:, 0] * s + local[:, 1] * c], axis=1)


def save_gif(frames: list[np.ndarray], path: str | Path, fps: int = 4, scale: int = 3) -> Path:
    """Camera frames (3, H, W) uint8 -> an animated GIF, each frame upscaled `scale` times."""
    from PIL import Image

    if not frames:
        raise ValueError("save_gif: expected at least one frame, got none")
    images = [
        Image.fromarray(np.asarray(f).transpose(1, 2, 0)).resize(
            (f.shape[2] * scale, f.shape[1] * scale), Image.NEAREST
        )
        for f in frames
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path
