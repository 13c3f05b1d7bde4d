"""`automot eval --baseline`: the reference policies on the same scenarios, seeds and metrics as a
trained policy, without a study."""

from __future__ import annotations

import json

import pytest

from automot.cli import main


def test_constant_velocity_open_loop_is_the_studies_number(tiny_dataset, capsys):
    from training.evaluate import constant_velocity_open_loop

    assert (
        main(
            [
                "eval",
                "--baseline",
                "constant_velocity",
                "--data",
                str(tiny_dataset),
                "--split",
                "val",
                "--json",
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["policy"] == "constant_velocity" and "closed_loop" not in printed
    assert printed["open_loop"] == pytest.approx(constant_velocity_open_loop(str(tiny_dataset / "val")))
    assert printed["open_loop"]["l2_avg_stp3"] > 0.1  # it does not follow the demonstrations


def test_expert_closed_loop_drives_the_split_seeds_and_resumes_from_its_records(tmp_path, capsys):
    from driving import split_seeds
    from driving.baselines import build_policy
    from training.evaluate import evaluate_closed_loop

    records = tmp_path / "expert.jsonl"
    args = ["eval", "--baseline", "expert", "--closed-loop", "--scenarios", "highway", "--episodes", "1"]
    assert main([*args, "--split", "val", "--records", str(records), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["closed_loop"]
    direct = evaluate_closed_loop(build_policy("expert"), ["highway"], split_seeds("val", 1))
    assert printed["ds"] == pytest.approx(direct["ds"]) and printed["episodes"] == 1
    assert printed["ds"] == pytest.approx(100.0)  # the privileged expert completes without infractions
    lines = records.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["seed"] == split_seeds("val", 1)[0]
    # a rerun reads the record instead of driving again, and prints the same summary as text
    assert main([*args, "--split", "val", "--records", str(records)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("baseline expert") and f"DS {printed['ds']:.2f}" in out
    assert records.read_text().splitlines() == lines
