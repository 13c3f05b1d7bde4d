"""`automot bench async`: registered, runs on a tiny configuration, numbers consistent with each other."""

from __future__ import annotations

import argparse
import json

import pytest

import automot.bench
import mot.bench


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    mot.bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_async_bench_is_registered():
    assert automot.bench.BENCHMARKS["async"] == "mot.bench"


def test_latency_stats_against_numpy():
    import numpy as np

    values = [5.0, 1.0, 3.0, 2.0, 4.0, 100.0]
    stats = mot.bench.latency_stats(values)
    assert stats["p50_ms"] == pytest.approx(3.5) and stats["max_ms"] == 100.0 and stats["n"] == 6
    assert stats["p90_ms"] == pytest.approx(float(np.percentile(values, 90)), abs=1e-3)
    assert stats["mean_ms"] == pytest.approx(sum(values) / 6, abs=1e-3)


def test_core_split_keeps_the_ae_and_the_ue_apart():
    split = mot.bench.core_split(ae_threads=1, ue_threads=None)
    if len(split["available"]) >= 2:
        assert split["ae"] and split["ue"] and not set(split["ae"]) & set(split["ue"])
        assert sorted(split["ae"] + split["ue"]) == split["available"]
    else:
        assert split["ae"] is None and split["ue"] is None


def test_bench_runs_and_reports_consistent_numbers():
    args = _args(
        "--preset", "tiny", "--frames", "2", "--views", "2", "--image-size", "32", "--bev-size", "32",
        "--rounds", "1", "--steps", "4", "--warmup", "0", "--executors", "thread", "--reasoning-tokens", "3",
    )  # fmt: skip
    result = mot.bench.run(args)
    json.dumps(result)  # JSON-ready
    for mode in ("floor", "floor_all_cores", "sync_every_step", "sync_every_k", "background_thread"):
        stats = result[mode]
        assert stats["n"] == 4 and stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    bg = result["background_thread"]
    assert bg["p50_over_floor"] == pytest.approx(bg["p50_ms"] / result["floor"]["p50_ms"], rel=1e-2)
    assert result["headline"]["mode"] == "background_thread"
    assert result["headline"]["background_p90_over_floor"] == bg["p90_over_floor"]
    assert 0 <= bg["cache_age_steps_mean"] <= bg["cache_age_steps_max"] and bg["cache_age_s_max"] >= 0
    assert result["reasoning_tokens_generated"] <= 3 and result["ue_refresh_with_reasoning_ms"] > 0
    # 2 frames x 2 views of 32 x 32 (4 merged tokens each) plus the chat text.
    assert result["ue_seq_len"] > 16 and result["ae_seq_len"] == 4 + 16 + 2 + 3 + 26


def test_bench_rejects_bad_arguments():
    with pytest.raises(ValueError, match="--views"):
        mot.bench.run(_args("--preset", "tiny", "--views", "0"))
    with pytest.raises(ValueError, match="--executors"):
        mot.bench.run(_args("--preset", "tiny", "--executors", "fiber"))
