"""Shared test settings: deterministic CPU torch, few threads (CI has 2 cores)."""

import os

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

# Under pytest-xdist (`make test`) every worker gets one thread, so two workers fill two cores
# instead of oversubscribing them; a plain `pytest` run keeps up to two.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads()))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small collected dataset (expert demonstrations): root/{train,val,test}, highway + merge, short episodes."""
    from driving.collect import CollectConfig, collect

    root = tmp_path_factory.mktemp("tiny_dataset")
    scenarios = ["highway", "merge"]
    overrides = {name: {"duration_s": 12.0} for name in scenarios}
    for split, episodes in (("train", 10), ("val", 2), ("test", 1)):
        config = CollectConfig(
            scenarios=scenarios, episodes=episodes, split=split, scenario_overrides=overrides
        )
        collect(config, root / split, workers=2, progress=False)
    return root


@pytest.fixture(scope="session")
def unlabeled_dataset(tmp_path_factory):
    """An observations-only collection (no labels on disk): one short highway episode."""
    from driving.collect import CollectConfig, collect

    root = tmp_path_factory.mktemp("unlabeled_dataset")
    config = CollectConfig(
        scenarios=["highway"], episodes=1, labeled=False, scenario_overrides={"highway": {"duration_s": 6.0}}
    )
    collect(config, root, workers=1, progress=False)
    return root
