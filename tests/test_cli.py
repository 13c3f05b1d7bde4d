"""The command line: subcommands exist, bad input is reported without a traceback, bench prints JSON."""

import json

import pytest

from automot.cli import build_parser, main


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for name in ("demo", "bench"):
        assert name in out


def test_bench_refiner_json_has_the_documented_keys(capsys):
    argv = ["bench", "refiner", "--json", "--batch-sizes", "1", "2", "--repeats", "1"]
    code = main([*argv, "--refiner-dim", "32", "--refiner-depth", "1", "--backbone", "tiny"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("mlp_ms", "diffusion_ms", "full_ddim_ms", "batch_size", "params", "by_batch", "machine"):
        assert key in result
    assert set(result["diffusion_ms"]) == {"1", "2", "5", "10"}
    assert [row["batch_size"] for row in result["by_batch"]] == [1, 2]
    assert result["params"]["diffusion_head"] > result["params"]["mlp_head"] > 0
    assert result["machine"]["date"]
    step = result["planning_step"]
    assert step["preset"] == "tiny" and step["ae_mlp_ms"] > 0 and step["ae_diffusion2_ms"] > 0


def test_value_errors_become_a_one_line_message(capsys):
    code = main(
        [
            "bench",
            "refiner",
            "--batch-sizes",
            "1",
            "--refiner-dim",
            "30",
            "--repeats",
            "1",
            "--backbone",
            "none",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "RefinerConfig.dim: expected a multiple of moa.num_heads=8, got 30" in err


def test_bench_train_reports_throughput_against_a_measured_peak(capsys):
    argv = ["bench", "train", "--json", "--preset", "tiny", "--batch-size", "2", "--image-size", "32"]
    assert main([*argv, "--bev-size", "32", "--repeats", "1", "--matmul-size", "256"]) == 0
    result = json.loads(capsys.readouterr().out)
    for stage in ("ae_stage", "refiner_stage"):
        row = result[stage]
        assert row["step_ms"] > 0 and row["gflop_per_step"] > 0
        # samples_per_s is printed with one decimal: compare within that rounding
        assert row["samples_per_s"] == pytest.approx(2 / (row["step_ms"] * 1e-3), rel=0.01, abs=0.051)
        # fraction_of_peak is printed with 3 decimals, peak_gflops with 1: within that rounding
        assert row["fraction_of_peak"] == pytest.approx(
            row["achieved_gflops"] / result["peak_gflops"], rel=0.02, abs=0.0006
        )
    # The refiner stage trains only the head: fewer trainable parameters than... its own total, and
    # none of the AE's (the AE stage trains the AE, the refiner stage a different set).
    assert result["refiner_stage"]["trainable_params"] != result["ae_stage"]["trainable_params"]


def test_fit_passes_its_arguments_to_the_lightning_cli(capsys):
    with pytest.raises(SystemExit) as err:
        main(["fit", "--help"])
    assert err.value.code == 0
    assert "--trainer.max_steps" in capsys.readouterr().out
