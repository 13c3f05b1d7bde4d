"""Where does a policy's longitudinal decision go wrong, open loop? The confusion of the predicted vs the
expert's longitudinal meta-action (accelerate / slow / keep / stop) at each horizon (1, 2, 3 s), and the
distance the plan travels in 3 s against the expert's, split by the expert's action at 1 s.

Run it on one scenario to see whether a closed-loop failure is already there on the demonstrations
(e.g. the policy plans to move on where the expert waits) or only appears on the states the policy
reaches itself (docs/reference-study.md does this for the intersection):

    python examples/decision_confusion.py --policy runs/reference/seeds/0/policy_mlp \\
        --data runs/reference/data/test --scenario intersection
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from automot import spec
from driving.dataset import DrivingDataset, collate
from training.policy import load_pretrained


def decision_confusion(policy: str, data: str, scenarios: list[str] | None, sampling_seed: int = 0) -> dict:
    """{"actions", "confusion": (K, C, C) counts [horizon, expert, predicted], "rows": per expert action
    at 1 s: n and the mean 3 s distance of the plan and of the expert [m]}."""
    backbone = load_pretrained(policy)
    if backbone.ae.config.decision_set == "longitudinal3":
        raise ValueError(
            f"--policy: expected a policy with the full decision set, got decision_set='longitudinal3' ({policy})"
        )
    backbone.ae.eval()
    dataset = DrivingDataset([data], scenarios=scenarios)
    if len(dataset) == 0:
        raise ValueError(f"--scenario: expected scenarios with samples in {data}, got {scenarios}")
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=False, collate_fn=collate)
    generator = torch.Generator().manual_seed(sampling_seed)
    pred, true, dist_plan, dist_expert = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            out = backbone(batch.sensors, generator=generator)
            pred.append(out.longitudinal_logits.argmax(-1))  # (B, K)
            true.append(batch.longitudinal)  # (B, K)
            dist_plan.append(out.plan.waypoints[:, -1].norm(dim=-1))  # (B,) the 3 s waypoint's distance
            dist_expert.append(batch.waypoints[:, -1].norm(dim=-1))
    p, t = torch.cat(pred).numpy(), torch.cat(true).numpy()
    dp, de = torch.cat(dist_plan).numpy(), torch.cat(dist_expert).numpy()
    names = list(spec.LONGITUDINAL_ACTIONS)
    c = len(names)
    confusion = np.zeros((t.shape[1], c, c), dtype=np.int64)
    for k in range(t.shape[1]):
        np.add.at(confusion[k], (t[:, k], p[:, k]), 1)
    rows = {
        name: {"n": int(sel.sum()), "plan_3s_m": float(dp[sel].mean()), "expert_3s_m": float(de[sel].mean())}
        for a, name in enumerate(names)
        if (sel := t[:, 0] == a).any()
    }
    return {"actions": names, "samples": int(t.shape[0]), "confusion": confusion, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="a policy folder (mot_config.json)")
    parser.add_argument("--data", required=True, help="a dataset folder (e.g. a study's data/test)")
    parser.add_argument("--scenario", action="append", help="only this scenario (repeatable); default all")
    parser.add_argument("--sampling-seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        result = decision_confusion(args.policy, args.data, args.scenario, args.sampling_seed)
    except ValueError as error:
        parser.error(str(error))  # a clear message and exit status 2, no traceback
    names = result["actions"]
    print(f"{result['samples']} samples; rows: the expert's action, columns: the policy's")
    for k, horizon in enumerate(spec.DECISION_HORIZONS_S):
        m = result["confusion"][k]
        print(f"\n{horizon:g} s | " + " | ".join(names) + " | accuracy")
        for a, name in enumerate(names):
            acc = m[a, a] / m[a].sum() if m[a].sum() else float("nan")
            print(f"{name} | " + " | ".join(str(v) for v in m[a]) + f" | {100 * acc:.0f} %")
    print(
        "\nexpert's action at 1 s | samples | plan's distance at 3 s (m) | expert's (m) | plan - expert (m)"
    )
    for name, r in result["rows"].items():
        print(
            f"{name} | {r['n']} | {r['plan_3s_m']:.2f} | {r['expert_3s_m']:.2f} | {r['plan_3s_m'] - r['expert_3s_m']:+.2f}"
        )
    return result


if __name__ == "__main__":
    main()
