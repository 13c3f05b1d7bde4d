import dataclasses
import json

import pytest
import torch

from automot.checks import check_mask, check_tensor
from automot.config import build_config, config_to_dict
from automot.io import (
    append_jsonl,
    atomic_path,
    load_safetensors,
    load_state_dict_strict,
    read_jsonl,
    save_safetensors_atomic,
)
from automot.registry import Registry


def test_registry_lists_known_names_on_unknown():
    reg = Registry("widget")
    reg.register("b")(dict)
    reg.register("a")(list)
    assert reg.names() == ["a", "b"] and "a" in reg
    with pytest.raises(ValueError, match=r"unknown widget 'c'; expected one of \['a', 'b'\]"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(tuple)


def test_check_tensor_named_dims_and_errors():
    dims = {}
    check_tensor("a", torch.zeros(2, 3), ("B", 3), dims=dims)
    assert dims == {"B": 2}
    with pytest.raises(ValueError, match=r"b: expected shape \(B, 3\) with B=2, got \(4, 3\)"):
        check_tensor("b", torch.zeros(4, 3), ("B", 3), dims=dims)
    with pytest.raises(ValueError, match=r"c: expected a torch.Tensor of shape \(\*, 2\), got list"):
        check_tensor("c", [1, 2], (None, 2))
    with pytest.raises(ValueError, match=r"d: expected dtype torch.bool, got torch.float32"):
        check_mask("d", torch.ones(2, 2), ("B", None))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"


def test_jsonl_ignores_a_torn_last_line_but_not_a_corrupt_middle(tmp_path):
    path = tmp_path / "runs.jsonl"
    append_jsonl(path, {"a": 1})
    append_jsonl(path, {"a": 2})
    with open(path, "a") as f:
        f.write('{"a": 3')  # writer killed mid-line
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_jsonl(path)


def test_safetensors_round_trip_and_strict_loading(tmp_path):
    torch.manual_seed(0)
    a = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    save_safetensors_atomic(a.state_dict(), tmp_path / "w.safetensors")
    b = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    load_state_dict_strict(b, load_safetensors(tmp_path / "w.safetensors"), source="w")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    c = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError) as err:
        load_state_dict_strict(c, load_safetensors(tmp_path / "w.safetensors"), source="w")
    msg = str(err.value)
    assert "missing keys ['2.bias', '2.weight']" in msg
    assert "0.bias: expected (5,), got (4,)" in msg and "unexpected" not in msg


@dataclasses.dataclass
class Inner:
    x: int = 1
    pair: tuple[float, float] = (1.0, 2.0)


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    name: str = "a"


def test_build_config_nested_dicts_and_json_round_trip():
    cfg = build_config(Outer, {"inner": {"x": 3, "pair": [0.5, 0.25]}}, name="b")
    assert cfg == Outer(Inner(3, (0.5, 0.25)), "b")
    assert build_config(Outer, json.loads(json.dumps(config_to_dict(cfg)))) == cfg
    with pytest.raises(
        ValueError, match=r"Inner: unknown field\(s\) \['y'\]; expected some of \['pair', 'x'\]"
    ):
        build_config(Outer, {"inner": {"y": 1}})
