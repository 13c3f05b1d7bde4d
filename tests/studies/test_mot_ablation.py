"""`automot bench mot-ablation`: bad arguments are refused before any work, and the summary's
means, stale-cache L2 increase and DS per k are the hand-computed ones."""

import argparse

import pytest

from studies import mot_ablation


def _args(tmp_path, **kw):
    parser = argparse.ArgumentParser()
    mot_ablation.add_arguments(parser)
    args = parser.parse_args(["--workdir", str(tmp_path / "w")])
    for key, value in kw.items():
        setattr(args, key, value)
    return args


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"variants": "reference,nope"}, "--variants"),
        ({"refresh_every": "1,0"}, "--refresh-every"),
        ({"ae_steps": 0}, "--ae-steps"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, kw, field):
    with pytest.raises(ValueError, match=field):
        mot_ablation.run(_args(tmp_path, **kw))
    assert not (tmp_path / "w").exists()


def _open_loop(l2: float, acc: float) -> dict:
    return {
        "l2_1s_stp3": l2 / 2,
        "l2_2s_stp3": l2,
        "l2_3s_stp3": 1.5 * l2,
        "l2_avg_stp3": l2,
        "acc_joint": acc,
    }


def test_summary_by_hand():
    seeds = [
        {
            "open_loop": {"0": _open_loop(1.0, 0.5), "1": _open_loop(1.2, 0.4), "2": _open_loop(1.5, 0.3)},
            "closed_loop": {1: {"ds": 60.0}, 2: {"ds": 50.0}},
        },
        {
            "open_loop": {"0": _open_loop(3.0, 0.7), "1": _open_loop(3.0, 0.6), "2": _open_loop(3.5, 0.5)},
            "closed_loop": {1: {"ds": 80.0}, 2: {"ds": 70.0}},
        },
    ]
    out = mot_ablation._summary(seeds)
    assert out["open_loop"]["0"]["l2_avg_stp3"] == pytest.approx(2.0)
    assert out["open_loop"]["0"]["acc_joint"] == pytest.approx(0.6)
    assert out["open_loop"]["1"]["l2_avg_stp3"] == pytest.approx(2.1)
    assert out["open_loop"]["1"]["l2_increase_pct"] == pytest.approx(5.0)  # 2.1 / 2.0 - 1
    assert out["open_loop"]["2"]["l2_increase_pct"] == pytest.approx(25.0)  # 2.5 / 2.0 - 1
    assert "acc_longitudinal" not in out["open_loop"]["0"]
    assert out["closed_loop_ds"] == {"1": pytest.approx(70.0), "2": pytest.approx(60.0)}
