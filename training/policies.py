"""Trained policies by kind: one registry that turns a policy folder into something the closed loop
can drive (`automot.types.Policy`), so studies compare the MoT policies (any head) and the distilled
student the same way.

    "mot":     a policy folder (`mot_config.json`): frozen UE + AE + head, run by `FastSlowPlanner`
    "student": a student folder (`student_config.json`): the UE-free planner, run alone

`policy_kind(folder)` tells them apart by their config file; `load_policy(folder, ...)` builds the
policy. (Issue 9 defines a plug-in contract for heads; this is the one place to adapt at merge time.)
"""

from __future__ import annotations

import os
from pathlib import Path

from automot.registry import Registry

POLICIES: Registry = Registry("policy kind")
MARKERS = {"mot": "mot_config.json", "student": "student_config.json"}


@POLICIES.register("mot")
def _mot(directory: Path, *, refresh_every: int = 2, seed: int = 0):
    from mot.runtime import FastSlowPlanner
    from training.policy import load_pretrained

    return FastSlowPlanner(load_pretrained(directory), refresh_every=refresh_every, seed=seed)


@POLICIES.register("student")
def _student(directory: Path, *, refresh_every: int = 2, seed: int = 0):
    from latent.policy import StudentPolicy

    return StudentPolicy.from_pretrained(directory)


def policy_kind(directory: str | os.PathLike) -> str:
    directory = Path(directory)
    kinds = [k for k, marker in MARKERS.items() if (directory / marker).exists()]
    if len(kinds) != 1:
        raise ValueError(
            f"policy folder {directory}: expected exactly one of {sorted(MARKERS.values())}, found {kinds or 'none'}"
        )
    return kinds[0]


def load_policy(directory: str | os.PathLike, *, refresh_every: int = 2, seed: int = 0):
    """A closed-loop policy from a trained folder (see the module docstring)."""
    return POLICIES.build(policy_kind(directory), Path(directory), refresh_every=refresh_every, seed=seed)
