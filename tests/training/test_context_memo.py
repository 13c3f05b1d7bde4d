"""The refiner's memo of the frozen AE's contexts keeps what its byte budget allows and returns the
same contexts with or without it."""

from dataclasses import dataclass

import pytest
import torch

from heads import ActionContext
from training.context_memo import ContextMemo, context_nbytes


@dataclass
class _Sensors:
    ego_state: torch.Tensor  # (B, 4): row i is sample i's content

    def select(self, rows: list[int]) -> "_Sensors":
        return _Sensors(self.ego_state[rows])


def _compute(calls: list[int]):
    def compute(sensors: _Sensors, keys) -> ActionContext:
        calls.append(len(keys))
        x = sensors.ego_state
        b = x.shape[0]
        return ActionContext(
            plan_latents=x[:, None, :].expand(b, 3, 4) * 2,
            decision_latents=x[:, None, :].expand(b, 2, 4) + 1,
            bev_tokens=x[:, None, :].expand(b, 5, 4).clone(),
            ego_state=x,
            ego_history=x[:, None, :2].expand(b, 2, 2).clone(),
        )

    return compute


def test_the_byte_budget_keeps_the_first_contexts_that_fit_and_changes_nothing():
    sensors = _Sensors(torch.arange(24, dtype=torch.float32).reshape(6, 4))
    keys = [f"sample{i}" for i in range(6)]
    calls: list[int] = []
    want = _compute([])(sensors, keys)
    size = context_nbytes(_compute([])(sensors.select([0]), keys[:1]))
    assert size == 4 * (3 * 4 + 2 * 4 + 5 * 4 + 4 + 2 * 2)  # float32 elements of one sample's tensors
    memo = ContextMemo(max_bytes=3 * size + size // 2)  # room for three contexts
    first = memo.get(sensors, keys, _compute(calls))
    assert list(memo._store) == keys[:3] and memo.budget.bytes == 3 * size
    assert calls == [1] * 6  # every unseen sample alone
    again = memo.get(sensors, keys, _compute(calls))
    assert calls == [1] * 9 and (memo.hits, memo.misses) == (3, 9)  # the three past the budget again
    for got in (first, again):
        assert torch.equal(got.plan_latents, want.plan_latents) and torch.equal(
            got.bev_tokens, want.bev_tokens
        )
    unlimited = ContextMemo(max_bytes=None)
    unlimited.get(sensors, keys, _compute([]))
    assert len(unlimited._store) == 6 and unlimited.budget.bytes == 6 * size
    with pytest.raises(ValueError, match="max_bytes: expected >= 0 or None, got -5"):
        ContextMemo(max_bytes=-5)
