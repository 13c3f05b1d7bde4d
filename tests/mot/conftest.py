"""Fixtures for the MoT tests: the tiny backbone and a synthetic sensor batch."""

from __future__ import annotations

import pytest

from automot.types import SensorBatch
from mot import MoTBackbone
from tests.mot._support import make_batch


@pytest.fixture(scope="session")
def tiny_backbone() -> MoTBackbone:
    """The tiny backbone, AE in eval mode. Tests that modify weights work on a deep copy of `ae`."""
    bb = MoTBackbone.build("tiny", seed=0)
    bb.ae.eval()
    return bb


@pytest.fixture
def batch() -> SensorBatch:
    return make_batch()
