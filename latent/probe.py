"""Linear probes of latent-action codes (analysis only: what do the codes mean?): a classifier to a
discrete label (`probe_scores`), and a ridge regression to continuous quantities such as the ego's
motion over the transition (`ridge_r2`).

Axes: N transitions, M latent tokens, K codebook entries, Y label classes.

The features are the one-hot codes of the M slots, concatenated (N, M * K); a multinomial logistic
regression (full batch, Adam, weight decay, a fixed number of steps from a seeded start) is fitted on
one set and scored on another. Reported next to the accuracy: the majority-class accuracy (what a
probe that ignores the codes reaches) and the balanced accuracy (mean recall over the classes present
in the evaluation set), since driving meta-actions are dominated by "straight" / "keep".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from automot.checks import check_tensor


def code_features(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """codes (N, M) long -> one-hot features (N, M * K) float."""
    check_tensor("codes", codes, ("N", "M"), dtype=torch.long)
    return F.one_hot(codes, codebook_size).flatten(1).float()


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    steps: int = 300,
    lr: float = 0.1,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> torch.nn.Linear:
    """Multinomial logistic regression features (N, F) -> labels (N,) in [0, Y)."""
    dims: dict[str, int] = {}
    check_tensor("features", features, ("N", None), dims=dims)
    check_tensor("labels", labels, ("N",), dims=dims, dtype=torch.long)
    if labels.numel() == 0:
        raise ValueError("labels: expected at least one labelled transition, got none")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(
            f"labels: expected classes in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = torch.nn.Linear(features.shape[1], num_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(probe(features), labels).backward()
        opt.step()
    return probe.eval()


def probe_scores(
    train_codes: torch.Tensor,
    train_labels: torch.Tensor,
    test_codes: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    codebook_size: int,
    num_classes: int,
    seed: int = 0,
) -> dict[str, float]:
    """Fit on (train_codes (N, M), train_labels (N,)), score on the test pair: accuracy,
    balanced_accuracy, majority (accuracy of always answering the train set's most frequent class)."""
    probe = fit_linear_probe(code_features(train_codes, codebook_size), train_labels, num_classes, seed=seed)
    with torch.no_grad():
        pred = probe(code_features(test_codes, codebook_size)).argmax(-1)
    majority = int(torch.bincount(train_labels, minlength=num_classes).argmax())
    recalls = [float((pred[test_labels == y] == y).float().mean()) for y in test_labels.unique().tolist()]
    return {
        "accuracy": float((pred == test_labels).float().mean()),
        "balanced_accuracy": sum(recalls) / len(recalls),
        "majority": float((test_labels == majority).float().mean()),
        "n_train": int(train_labels.numel()),
        "n_test": int(test_labels.numel()),
    }


def ridge_r2(
    train_features: torch.Tensor,
    train_targets: torch.Tensor,
    test_features: torch.Tensor,
    test_targets: torch.Tensor,
    *,
    ridge: float = 1e-2,
) -> float:
    """Held-out R^2 of a ridge regression (with an unpenalised intercept) fitted on train_features
    (N, F) -> train_targets (N,) or (N, D), scored on the test pair: 1 - residual sum of squares /
    total sum of squares about the test targets' mean, summed over the D outputs. 0: no better than
    the test mean; negative: worse. Solved in float64 in closed form (deterministic)."""
    dims: dict[str, int] = {}
    check_tensor("train_features", train_features, ("N", "F"), dims=dims)
    check_tensor("test_features", test_features, ("T", "F"), dims=dims)
    y_train = train_targets.reshape(dims["N"], -1) if train_targets.ndim == 1 else train_targets
    y_test = test_targets.reshape(dims["T"], -1) if test_targets.ndim == 1 else test_targets
    check_tensor("train_targets", y_train, ("N", "D"), dims=dims)
    check_tensor("test_targets", y_test, ("T", "D"), dims=dims)
    if ridge < 0:
        raise ValueError(f"ridge: expected a value >= 0, got {ridge}")
    if dims["T"] < 2:
        raise ValueError(f"test_targets: expected at least 2 rows to score R^2, got {dims['T']}")
    x, y = train_features.double(), y_train.double()
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc = x - x_mean
    gram = xc.T @ xc + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    weights = torch.linalg.lstsq(gram, xc.T @ (y - y_mean)).solution
    pred = (test_features.double() - x_mean) @ weights + y_mean
    target = y_test.double()
    total = ((target - target.mean(0)) ** 2).sum()
    if float(total) == 0.0:
        raise ValueError("test_targets: expected targets that vary, got constant ones (R^2 is undefined)")
    return float(1.0 - ((target - pred) ** 2).sum() / total)
