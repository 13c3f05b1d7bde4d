"""How good is a latent action model? Three numbers on held-out transitions, as the public LAM
papers report them:

- codebook use: perplexity, usage, per-slot perplexity, distinct code tuples (`latent.vq.code_statistics`);
- reconstruction: the FDM's MSE on o_{t+H} against the copy-current-frame baseline's (o_t as the
  prediction) on the same transitions, overall and per observation channel; with odometry also the
  predicted speed change's RMSE against the no-change baseline's;
- meaning: a linear probe from the codes of (o_t, o_{t+H}) to the true meta-actions at horizon H
  (lateral 5-way, longitudinal 4-way, joint), fitted on one labeled set and scored on another.

The probe is the only place here that reads labels, and it is analysis only: nothing trains on it.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from automot import spec
from latent.data import TransitionDataset, collate_transitions
from latent.lam import LatentActionModel
from latent.probe import probe_scores
from latent.vq import code_statistics


@torch.no_grad()
def _pass(lam: LatentActionModel, dataset: TransitionDataset, batch_size: int, labels: bool) -> dict:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_transitions)
    codes, recon, copy, lateral, longitudinal, speed, change = [], [], [], [], [], [], []
    k = spec.DECISION_HORIZONS_S.index(lam.config.horizon_s) if labels else None
    for batch in loader:
        obs, future = batch.frames[:, 0], batch.frames[:, 1]
        out = lam(obs, future, batch.speeds)
        if batch.speeds is not None:
            speed.append(out.speed_change)
            change.append(batch.speeds[:, 1] - batch.speeds[:, 0])
        target, current = lam.prepare("future", future), lam.prepare("obs", obs)
        codes.append(out.codes)
        recon.append((out.prediction - target).pow(2).mean(dim=(2, 3)))  # (B, C)
        copy.append((current - target).pow(2).mean(dim=(2, 3)))
        if labels:
            lateral.append(batch.driving.lateral[:, k])
            longitudinal.append(batch.driving.longitudinal[:, k])
    out = {"codes": torch.cat(codes), "recon": torch.cat(recon), "copy": torch.cat(copy)}
    if speed:
        out["speed_change"], out["true_change"] = torch.cat(speed), torch.cat(change)
    if labels:
        out["lateral"], out["longitudinal"] = torch.cat(lateral), torch.cat(longitudinal)
    return out


def lam_quality(
    lam: LatentActionModel,
    eval_dirs,
    *,
    probe_train_dirs=None,
    probe_eval_dirs=None,
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """Codebook use and reconstruction on `eval_dirs` (any dataset, labeled or not); the linear probe
    when both labeled `probe_train_dirs` and `probe_eval_dirs` are given."""
    lam = lam.eval()
    offsets = (lam.config.horizon_s,)
    kind = lam.config.observation
    odometry = lam.config.odometry
    data = _pass(
        lam,
        TransitionDataset(eval_dirs, offsets_s=offsets, observation=kind, sensors=False, speeds=odometry),
        batch_size,
        False,
    )
    size = lam.vq.size
    recon, copy = data["recon"].mean(0), data["copy"].mean(0)
    channels = list(spec.BEV_CHANNELS) if kind == "bev" else ["r", "g", "b"]
    result = {
        "transitions": int(data["codes"].shape[0]),
        "codebook": code_statistics(data["codes"], size),
        "recon_mse": float(recon.mean()),
        "copy_mse": float(copy.mean()),
        "recon_over_copy": float(recon.mean() / copy.mean().clamp_min(1e-12)),
        "per_channel": {
            name: {"recon_mse": float(r), "copy_mse": float(c)} for name, r, c in zip(channels, recon, copy)
        },
    }
    if odometry:
        true = data["true_change"]
        result["speed_change"] = {
            "rmse": float((data["speed_change"] - true).pow(2).mean().sqrt()),
            "zero_rmse": float(true.pow(2).mean().sqrt()),
        }
    if probe_train_dirs is not None and probe_eval_dirs is not None:
        if lam.config.horizon_s not in spec.DECISION_HORIZONS_S:
            raise ValueError(
                f"lam.horizon_s: expected one of the labeled horizons {spec.DECISION_HORIZONS_S} for the probe, "
                f"got {lam.config.horizon_s}"
            )

        def labeled(dirs):
            ds = TransitionDataset(
                dirs, offsets_s=offsets, observation=kind, sensors=False, labels=True, speeds=odometry
            )
            return _pass(lam, ds, batch_size, True)

        train, test = labeled(probe_train_dirs), labeled(probe_eval_dirs)
        n_lon = len(spec.LONGITUDINAL_ACTIONS)
        joint = {
            name: d["lateral"] * n_lon + d["longitudinal"] for name, d in (("train", train), ("test", test))
        }
        result["probe"] = {
            name: probe_scores(
                train["codes"], y_train, test["codes"], y_test, codebook_size=size, num_classes=n, seed=seed
            )
            for name, y_train, y_test, n in (
                ("lateral", train["lateral"], test["lateral"], len(spec.LATERAL_ACTIONS)),
                ("longitudinal", train["longitudinal"], test["longitudinal"], n_lon),
                ("joint", joint["train"], joint["test"], len(spec.LATERAL_ACTIONS) * n_lon),
            )
        }
    return result
