"""What the latent action model's codes say about the ego's own motion: ridge probes (held-out R^2)
from the one-hot codes of each transition (o_t, o_t+H) to the distance the ego travels over H, its
speed at t, and its speed change over H, overall and with each scenario's mean removed (the codes
could carry which scenario it is rather than how the ego moves in it). Also the phase of the
distance modulo the BEV's lane-stripe spacing (4.33 m): a LAM that read the ego's motion only from
the dashes would carry that phase, not the distance. Speeds come from the ego state of the two
observations (odometry), not from labels.

    python examples/lam_motion_probe.py runs/latent --fit val --eval test --out runs/latent/lam_motion.json
"""

import argparse
import json
import math
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from automot.io import write_json_atomic
from driving.sensors.bev import STRIPE_SPACING_M
from latent.data import TransitionDataset, collate_transitions
from latent.lam import load_lam
from latent.probe import code_features, ridge_r2


@torch.no_grad()
def transitions(lam, root: Path) -> dict:
    """Codes (N, M), speed at t and t+H (N,) and scenario names of every transition in `root`."""
    data = TransitionDataset(
        root,
        offsets_s=(lam.config.horizon_s,),
        observation=lam.config.observation,
        sensors=False,
        speeds=True,
    )
    codes, now, later, scenarios = [], [], [], []
    for batch in DataLoader(data, batch_size=128, shuffle=False, collate_fn=collate_transitions):
        speeds = batch.speeds if lam.config.odometry else None  # an odometry LAM reads them too
        codes.append(lam(batch.frames[:, 0], batch.frames[:, 1], speeds).codes)
        now.append(batch.speeds[:, 0])
        later.append(batch.speeds[:, 1])
        scenarios += list(batch.meta["scenario"])
    return {"codes": torch.cat(codes), "now": torch.cat(now).double(), "later": torch.cat(later).double(),
            "scenarios": scenarios}  # fmt: skip


def targets(t: dict, horizon_s: float) -> dict[str, torch.Tensor]:
    distance = (t["now"] + t["later"]) / 2 * horizon_s  # trapezoid
    phase = 2 * math.pi * distance / STRIPE_SPACING_M
    out = {
        "distance_m": distance,
        "speed_now": t["now"],
        "speed_change": t["later"] - t["now"],
        "stripe_phase": torch.stack([phase.cos(), phase.sin()], 1),
    }
    for name in ("distance_m", "speed_change"):
        out[f"{name}_within_scenario"] = _demean(out[name], t["scenarios"])
    return out


def _demean(y: torch.Tensor, scenarios: list[str]) -> torch.Tensor:
    y = y.clone()
    for name in set(scenarios):
        rows = torch.tensor([s == name for s in scenarios])
        y[rows] -= y[rows].mean()
    return y


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="a latent study's folder (its latent/lam and data/)")
    parser.add_argument("--fit", default="val", help="split the probes are fitted on")
    parser.add_argument("--eval", default="test", help="held-out split they are scored on")
    parser.add_argument("--ridge", type=float, default=1e-2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    lam = load_lam(args.study / "latent" / "lam").eval()
    fit, held = (transitions(lam, args.study / "data" / split) for split in (args.fit, args.eval))
    x_fit, x_eval = (code_features(t["codes"], lam.vq.size) for t in (fit, held))
    y_fit, y_eval = targets(fit, lam.config.horizon_s), targets(held, lam.config.horizon_s)
    result = {
        "fit": args.fit,
        "eval": args.eval,
        "transitions": [len(fit["scenarios"]), len(held["scenarios"])],
        "horizon_s": lam.config.horizon_s,
        # How much of the distance the scenario alone explains (the within-scenario rows remove it).
        "scenario_share_of_distance_variance": float(
            1 - y_eval["distance_m_within_scenario"].var() / y_eval["distance_m"].var()
        ),
        "r2": {k: round(ridge_r2(x_fit, y_fit[k], x_eval, y_eval[k], ridge=args.ridge), 4) for k in y_fit},
    }
    print(json.dumps(result, indent=1))
    if args.out is not None:
        write_json_atomic(args.out, result)
    return result


if __name__ == "__main__":
    main()
