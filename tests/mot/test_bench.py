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


def test_bench_runs_and_reports_consistent_numbers():
    args = _args(
        "--preset", "tiny", "--frames", "2", "--views", "2", "--image-size", "32", "--bev-size", "32",
        "--repeats", "2", "--warmup", "1", "--background-steps", "3",
    )  # fmt: skip
    result = mot.bench.run(args)
    json.dumps(result)  # JSON-ready
    for key in (
        "sync_ms",
        "async_ms",
        "ae_only_ms",
        "speedup",
        "overhead",
        "preset",
        "ue_seq_len",
        "batch_size",
    ):
        assert key in result
    assert result["preset"] == "tiny" and result["batch_size"] == 1
    assert result["speedup"] == pytest.approx(result["sync_ms"] / result["async_ms"], rel=1e-2)
    assert result["overhead"] == pytest.approx(result["async_ms"] / result["ae_only_ms"], rel=1e-2)
    # 2 frames x 2 views of 32 x 32 (4 merged tokens each) plus the chat text.
    assert result["ue_seq_len"] > 16 and result["ae_seq_len"] == 4 + 16 + 2 + 3 + 26
    assert result["background_ue_calls"] >= 1


def test_bench_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as err:  # argparse's usage error: exit code 2, the flag named
        _args("--preset", "tiny", "--views", "0")
    assert err.value.code == 2 and "--views: expected an int >= 1, got '0'" in capsys.readouterr().err
