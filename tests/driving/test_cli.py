"""`automot expert` / `automot drive`: the JSON report has the documented per-scenario fields."""

import json

from automot.cli import main


def test_expert_json_report(capsys):
    assert (
        main(["expert", "--scenario", "highway", "merge", "--episodes", "1", "--duration", "6", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    for name in ("highway", "merge"):
        block = report[name]
        assert set(block) >= {"success_rate", "route_completion", "collision_rate", "ds", "sr", "episodes"}
        assert block["episodes"] == 1 and 0.0 <= block["success_rate"] <= 1.0
    assert report["policy"] == "expert" and report["split"] == "test"


def test_drive_saves_gifs(tmp_path, capsys):
    gifs = tmp_path / "gifs"
    records = tmp_path / "records.jsonl"
    args = [
        "drive",
        "--policy",
        "constant_velocity",
        "--scenario",
        "highway",
        "--episodes",
        "1",
        "--duration",
        "2",
    ]
    assert main([*args, "--gif", str(gifs), "--records", str(records)]) == 0
    (gif,) = gifs.glob("*.gif")
    assert gif.read_bytes()[:6] == b"GIF89a"
    assert len(records.read_text().splitlines()) == 1
    assert "highway" in capsys.readouterr().out
