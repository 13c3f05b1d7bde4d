"""The ridge probe of latent codes (`latent.probe.ridge_r2`) against an independent numpy solution,
and on planted targets whose answer is known."""

import numpy as np
import pytest
import torch

from latent.probe import code_features, ridge_r2


def _numpy_r2(x_train, y_train, x_test, y_test, ridge):
    """The same estimator solved another way: the normal equations of the design [x, 1] with the
    penalty on the weights only (not the intercept)."""
    a = np.hstack([x_train, np.ones((len(x_train), 1))])
    penalty = ridge * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    w = np.linalg.solve(a.T @ a + penalty, a.T @ y_train)
    pred = np.hstack([x_test, np.ones((len(x_test), 1))]) @ w
    return 1 - ((y_test - pred) ** 2).sum() / ((y_test - y_test.mean(0)) ** 2).sum()


@pytest.mark.parametrize("ridge", [0.0, 0.5, 10.0])
def test_ridge_r2_equals_the_numpy_solution(ridge):
    g = torch.Generator().manual_seed(0)
    x_train, x_test = torch.randn(80, 5, generator=g), torch.randn(40, 5, generator=g)
    w = torch.randn(5, 2, generator=g)
    y_train = x_train @ w + 0.7 * torch.randn(80, 2, generator=g) + 3.0
    y_test = x_test @ w + 0.7 * torch.randn(40, 2, generator=g) + 3.0
    got = ridge_r2(x_train, y_train, x_test, y_test, ridge=ridge)
    want = _numpy_r2(*(t.double().numpy() for t in (x_train, y_train, x_test, y_test)), ridge)
    assert got == pytest.approx(want, abs=1e-10)


def test_codes_that_carry_a_quantity_score_high_and_codes_that_do_not_score_near_zero():
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(0, 8, (600, 2), generator=g)
    features = code_features(codes, 8)
    value = torch.linspace(-3, 3, 8)
    carried = value[codes[:, 0]] + 0.05 * torch.randn(600, generator=g)  # read from slot 0's code
    unrelated = torch.randn(600, generator=g)
    tr, te = slice(0, 400), slice(400, 600)
    assert ridge_r2(features[tr], carried[tr], features[te], carried[te]) > 0.99
    assert abs(ridge_r2(features[tr], unrelated[tr], features[te], unrelated[te])) < 0.05


def test_bad_probe_inputs_name_the_argument():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"test_features"):
        ridge_r2(x, torch.zeros(4), torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match=r"ridge: expected a value >= 0, got -1"):
        ridge_r2(x, torch.zeros(4), x, torch.arange(4.0), ridge=-1)
    with pytest.raises(ValueError, match=r"test_targets: expected targets that vary"):
        ridge_r2(x, torch.zeros(4), x, torch.ones(4))
