"""`automot collect` on an existing dataset: more episodes extend it (the shards already there stay
byte-for-byte), a shard that fails its hash is named, kept aside and collected again to the same
bytes, and a smaller or different config is refused without touching anything."""

import json
import zipfile

import pytest

from driving.collect import CollectConfig, collect


def _config(episodes):
    return CollectConfig(
        scenarios=["highway"],
        episodes=episodes,
        split="val",
        scenario_overrides={"highway": {"duration_s": 4.0}},
    )


def _index(path):
    return json.loads((path / "index.json").read_text())


def test_more_episodes_extend_and_a_corrupt_shard_is_collected_again(tmp_path):
    out = tmp_path / "data"
    first = collect(_config(1), out, progress=False)
    (shard,) = sorted((out / "shards").glob("*.npz"))
    original = shard.read_bytes()

    extended = collect(_config(2), out, progress=False)
    assert extended["complete"] and len(extended["episodes"]) == 2
    assert extended["config"]["episodes"] == 2
    assert shard.read_bytes() == original  # kept, not collected again
    assert extended["episodes"][0] == first["episodes"][0]

    with zipfile.ZipFile(shard, "a") as zf:  # still a valid zip, not the bytes the index hashed
        zf.writestr("extra.npy", b"")
    with pytest.warns(UserWarning, match=rf"shard .*{shard.name} fails its hash .*collected again"):
        repaired = collect(_config(2), out, progress=False)
    assert shard.read_bytes() == original  # the same episode gives the same bytes
    assert (out / "shards" / f"{shard.name}.corrupt").exists()  # kept for inspection, not deleted
    assert repaired["episodes"] == extended["episodes"]

    before = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    with pytest.raises(
        ValueError, match=r"episodes: 2 -> 1 \(a dataset is only ever extended, never shrunk\)"
    ):
        collect(_config(1), out, progress=False)
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == before
    assert _index(out)["config"]["episodes"] == 2
