import numpy as np
import pytest
import torch
from scipy import stats

from training.refine_eval import paired_difference


def test_paired_difference_matches_scipys_paired_t_test():
    g = torch.Generator().manual_seed(0)
    b = torch.rand(200, generator=g) + 0.3
    a = b + 0.01 + 0.05 * torch.randn(200, generator=g)
    out = paired_difference(a, b)
    ref = stats.ttest_rel(a.numpy().astype(np.float64), b.numpy().astype(np.float64))
    ci = ref.confidence_interval(0.95)
    assert out["mean"] == pytest.approx(float((a - b).double().mean()), rel=1e-12)
    assert out["ci95_low"] == pytest.approx(ci.low, rel=1e-9)
    assert out["ci95_high"] == pytest.approx(ci.high, rel=1e-9)
    assert out["relative"] == pytest.approx(out["mean"] / float(b.mean()), rel=1e-9)
    # Identical plans: no difference, a zero-width interval.
    same = paired_difference(b, b)
    assert same["mean"] == same["ci95_low"] == same["ci95_high"] == 0.0


def test_paired_difference_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match=r"a, b: expected two \(N,\) tensors"):
        paired_difference(torch.zeros(5), torch.zeros(4))
    with pytest.raises(ValueError, match=r"N >= 2"):
        paired_difference(torch.zeros(1), torch.zeros(1))
