"""An installed distribution's `automot.plugins` entry point registers its head the first time a
registry meets the unknown name; `--import` takes a `.py` file too; failures name the module."""

import sys
import textwrap

import pytest

import automot.plugins as plugins
from heads import HEADS, ContextDims, build_head

HEAD_MODULE = """
import torch
from heads import Plan, PlanningHead, register_head

@register_head("{name}")
class Straight(PlanningHead):
    def __init__(self, dims, speed: float = 1.0):
        super().__init__()
        self.dims, self.speed = dims, speed
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, ctx, *, generator=None):
        b = ctx.batch_size
        t = torch.arange(1, self.dims.num_waypoints + 1.0) * self.speed
        wp = torch.stack([t, torch.zeros_like(t)], -1).expand(b, -1, -1) + self.w
        s = torch.arange(1, self.dims.num_route + 1.0) * 2
        return Plan(wp, torch.stack([s, torch.zeros_like(s)], -1).expand(b, -1, -1))

    def loss(self, ctx, target, *, generator=None):
        return {{"loss": (self(ctx).waypoints - target.waypoints).abs().mean()}}
"""


@pytest.fixture
def fresh_plugins(monkeypatch, tmp_path):
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.syspath_prepend(str(tmp_path))
    entries = dict(HEADS._entries)
    yield tmp_path
    HEADS._entries.clear()
    HEADS._entries.update(entries)
    for name in ("ep_heads", "file_head"):
        sys.modules.pop(name, None)


def test_an_installed_entry_point_registers_its_head_on_first_use(fresh_plugins):
    root = fresh_plugins
    (root / "ep_heads.py").write_text(textwrap.dedent(HEAD_MODULE.format(name="ep_straight")))
    dist = root / "ep_heads-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-heads\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[automot.plugins]\nstraight = ep_heads\n")
    assert "ep_straight" not in HEADS
    head = build_head("ep_straight", ContextDims(latent_dim=8), speed=2.0)  # no import anywhere
    assert type(head).__module__ == "ep_heads" and head.export_config() == {"speed": 2.0}
    assert plugins.load_entry_points() == []  # loaded once


def test_import_by_file_and_failures_name_the_module(fresh_plugins):
    root = fresh_plugins
    (root / "file_head.py").write_text(textwrap.dedent(HEAD_MODULE.format(name="file_straight")))
    plugins.import_module(str(root / "file_head.py"))
    assert "file_straight" in HEADS
    (root / "broken_head.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match=r"--import: expected .*broken_head.py to import cleanly.*boom"):
        plugins.import_module(str(root / "broken_head.py"))
    with pytest.raises(ValueError, match=r"unknown planning head 'nowhere'.*--import MODULE"):
        build_head("nowhere", ContextDims(latent_dim=8))
