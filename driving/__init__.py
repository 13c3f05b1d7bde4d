"""The embedded driving world (paper sections 3-4 stand-ins): highway-env scenarios, a rule-based expert,
camera and BEV sensors, labelled demonstration datasets and Bench2Drive-style closed-loop scoring.

    from driving import World, ExpertPolicy, evaluate, summarize, split_seeds
    records = evaluate(ExpertPolicy(), "roundabout", split_seeds("test", 10))
    summarize(records)["ds"]

Names are imported lazily, so `import driving` stays cheap (highway-env and pygame load on first use).
See docs/driving.md for the layout, frames, shapes and thresholds.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "World": "driving.world",
    "SimConfig": "driving.config",
    "SensorConfig": "driving.config",
    "CameraConfig": "driving.config",
    "BEVConfig": "driving.config",
    "LabelConfig": "driving.config",
    "SCENARIOS": "driving.scenarios",
    "build_scenario": "driving.scenarios",
    "available_scenarios": "driving.scenarios",
    "split_seeds": "driving.scenarios",
    "split_of": "driving.scenarios",
    "ExpertPolicy": "driving.expert",
    "ExpertConfig": "driving.expert",
    "ConstantVelocityPolicy": "driving.baselines",
    "build_policy": "driving.baselines",
    "Tracker": "driving.controller",
    "TrackerConfig": "driving.controller",
    "EvalConfig": "driving.closed_loop",
    "evaluate": "driving.closed_loop",
    "run_episode": "driving.closed_loop",
    "EpisodeRecord": "driving.scoring",
    "summarize": "driving.scoring",
    "route_score": "driving.scoring",
    "PENALTIES": "driving.scoring",
    "CollectConfig": "driving.collect",
    "collect": "driving.collect",
    "DrivingDataset": "driving.dataset",
    "DrivingBatch": "driving.dataset",
    "collate": "driving.dataset",
    "plan_collisions": "driving.collision",
    "VOCABULARY": "driving.language",
    "MetaActionThresholds": "driving.labels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'driving' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
