"""A study config is checked completely before its first task runs, and a resumed study is checked
against the config it was started with.

`validate_study(config)` builds everything the config names at toy sizes, in milliseconds: the
backbone preset's config, every head (with its noise model and scheduler) for a tiny context, the
scenarios with their overrides, the optimiser settings of each stage. A misspelt head, bad head
kwargs, an unknown noise model or preset, a negative warm-up: all fail here, not after data
collection and hours of training. It returns the plug-in modules the workers must import.

`config_differences(old, new)` lists the differing fields as dotted paths with both values, and
`kept_tasks_when_forced` says which finished tasks survive a `--force` resume (those whose inputs did
not change: the data, and the UE when its own settings did not change).
"""

from __future__ import annotations

import re
from typing import Any

from automot.plugins import module_of
from studies.config import StudyConfig

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def validate_study(config: StudyConfig) -> list[str]:
    """Build every part the study names at tiny sizes; `ValueError` naming the field on the first
    problem. Returns the modules that define its heads (for the worker processes to import)."""
    from driving.scenarios import build_scenario
    from heads import ContextDims, MLPHead, head_class
    from mot.presets import preset_config
    from training.optim import OptimConfig

    _field("preset", preset_config, config.preset)
    for name in config.data.scenarios:
        overrides = {"density": config.data.density}
        if config.data.duration_s is not None:
            overrides["duration_s"] = config.data.duration_s
        _field("data.scenarios", build_scenario, name, **overrides)
    for stage in ("ae", "refiner"):
        spec = getattr(config, stage)
        _field(f"{stage}", OptimConfig, lr=spec.lr, warmup_steps=spec.warmup_steps)
    dims = ContextDims(latent_dim=8, reasoning_dim=8)
    modules = []
    for i, spec in enumerate(config.heads):
        field = f"heads[{i}]"
        if not _LABEL.match(spec.key):
            raise ValueError(
                f"{field}.label: expected letters, digits, '_', '.' or '-' (it names folders), got {spec.key!r}"
            )
        cls = _field(f"{field}.name", head_class, spec.name)
        if cls.refines_prior:
            _field(f"{field}.kwargs", cls.from_mlp_head, MLPHead(dims), **spec.kwargs)
        else:
            from heads import build_head

            _field(f"{field}.kwargs", build_head, spec.name, dims, **spec.kwargs)
        module = module_of(cls)
        if module == "__main__":
            raise ValueError(
                f"{field}.name: expected the head {spec.name!r} to live in an importable module (study workers "
                "import it), got a class defined in the __main__ script"
            )
        modules.append(module)
    return sorted(set(modules))


def _field(field: str, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"study config {field}: {err}") from None
    except TypeError as err:  # a keyword the part does not take
        raise ValueError(f"study config {field}: expected arguments it accepts, got {err}") from None


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`path: old -> new` for every leaf that differs (lists of mappings by index)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    same_shape = isinstance(old, list) and isinstance(new, list) and len(old) == len(new)
    if same_shape and all(isinstance(x, dict) for x in old + new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            out += config_differences(a, b, f"{prefix[:-1]}[{i}].")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


# Which top-level fields each kind of finished task depends on: a --force resume keeps a finished
# task only when none of them changed.
_INPUTS = {
    "collect": ("data",),
    "ue": ("data", "preset", "pretrain_ue_steps"),
}


def kept_tasks_when_forced(old: dict, new: dict) -> set[str]:
    return {kind for kind, keys in _INPUTS.items() if all(old.get(k) == new.get(k) for k in keys)}
