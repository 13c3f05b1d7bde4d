"""The hybrid mask: the drawn example, hand-written cases, and a brute-force rule over random layouts."""

from __future__ import annotations

import random

import pytest
import torch

import mot.mask as mask_module
from mot.mask import Segment, block_ids, hybrid_mask, render_mask, segment_slices


def _docstring_drawing() -> str:
    doc = mask_module.__doc__
    body = doc.split("d: 2 decision queries, p: 2 planning queries):", 1)[1].strip("\n")
    lines = [ln[4:] for ln in body.splitlines() if ln.strip()]
    return "\n".join(lines[:10])


def test_docstring_example_is_what_the_function_draws():
    layout = [
        Segment("text", 3, "understanding", causal=True),
        Segment("obs", 2, "observation"),
        Segment("decision", 2, "decision"),
        Segment("plan", 2, "planning"),
    ]
    labels = list("uuuooddpp")
    assert render_mask(hybrid_mask(layout), labels) == _docstring_drawing()


def test_hand_written_case_with_two_modalities_per_task():
    # obs task has two modalities (a, b); planning has two (w, r).
    layout = [
        Segment("lang", 2, "understanding", causal=True),
        Segment("a", 2, "observation"),
        Segment("b", 1, "observation"),
        Segment("dec", 1, "decision"),
        Segment("w", 1, "planning"),
        Segment("r", 1, "planning"),
    ]
    x, o = True, False
    want = torch.tensor(
        [
            # l  l  a  a  b  d  w  r
            [x, o, o, o, o, o, o, o],
            [x, x, o, o, o, o, o, o],
            [x, x, x, x, x, o, o, o],
            [x, x, x, x, x, o, o, o],
            [x, x, x, x, x, o, o, o],
            [x, x, x, x, x, x, o, o],
            [x, x, x, x, x, x, x, x],
            [x, x, x, x, x, x, x, x],
        ]
    )
    assert torch.equal(hybrid_mask(layout), want)
    # Cross-modal causal reading: b sees a but not the reverse; r sees w but not the reverse.
    want_cm = want.clone()
    want_cm[2:4, 4] = False
    want_cm[6, 7] = False
    assert torch.equal(hybrid_mask(layout, cross_modal_causal=True), want_cm)


def test_non_causal_segment_after_causal_one_of_same_task_starts_a_block():
    layout = [Segment("lang", 2, "u", causal=True), Segment("img", 2, "u")]
    m = hybrid_mask(layout)
    assert not m[1, 2] and not m[1, 3]  # the last language token does not see the later image
    assert m[2, 3] and m[3, 2]  # the image is bidirectional inside


def _brute_force(layout, cross_modal_causal):
    """The rules of the paper, written token by token without any cumulative sum."""
    tokens = []  # (task rank, segment index, causal, position)
    ranks: dict[str, int] = {}
    pos = 0
    for si, seg in enumerate(layout):
        ranks.setdefault(seg.task, len(ranks))
        for _ in range(seg.length):
            tokens.append((ranks[seg.task], si, seg.causal, pos))
            pos += 1
    n = len(tokens)
    out = torch.zeros(n, n, dtype=torch.bool)
    for i, (ti, si, ci, pi) in enumerate(tokens):
        for j, (tj, sj, _cj, pj) in enumerate(tokens):
            if tj != ti:
                ok = tj < ti
            elif si == sj:
                ok = pj <= pi if ci else True
            elif cross_modal_causal or any(layout[k].causal for k in range(min(si, sj), max(si, sj) + 1)):
                ok = pj <= pi  # modalities separated by (or being) language: by order
            else:
                ok = True  # modalities of one task: bidirectional
            out[i, j] = ok
    return out


@pytest.mark.parametrize("cross_modal_causal", [False, True])
def test_matches_brute_force_rules_on_random_layouts(cross_modal_causal):
    rng = random.Random(0)
    for _ in range(60):
        layout = []
        for t in range(rng.randint(1, 4)):
            for s in range(rng.randint(1, 3)):
                # Only the first task carries language (as in the model: the UE).
                causal = t == 0 and rng.random() < 0.5
                layout.append(Segment(f"t{t}s{s}", rng.randint(1, 4), f"task{t}", causal=causal))
        got = hybrid_mask(layout, cross_modal_causal=cross_modal_causal)
        assert torch.equal(got, _brute_force(layout, cross_modal_causal)), layout


def test_rows_selects_query_rows():
    layout = [Segment("u", 4, "u", causal=True), Segment("o", 3, "o"), Segment("p", 2, "p")]
    full = hybrid_mask(layout)
    assert torch.equal(hybrid_mask(layout, rows=slice(4, None)), full[4:])


def test_bad_layouts_raise():
    with pytest.raises(ValueError, match="contiguous"):
        block_ids([Segment("a", 1, "x"), Segment("b", 1, "y"), Segment("c", 1, "x")])
    with pytest.raises(ValueError, match="length"):
        Segment("a", -1, "x")
    with pytest.raises(ValueError, match="unique"):
        segment_slices([Segment("a", 1, "x"), Segment("a", 1, "x")])
    with pytest.raises(ValueError, match="square"):
        render_mask(torch.ones(2, 3, dtype=torch.bool), ["a", "b"])


# -- the mask options of the model, against masks built from segment labels by the rules above ----------


def _ue_layout(ids, start_id, end_id):
    """Segment labels of one UE token sequence: language runs are causal segments, every image block
    (start .. end) its own segment; all in the understanding task."""
    layout, run, i = [], 0, 0
    tokens = ids.tolist()
    while i < len(tokens):
        if tokens[i] == start_id:
            if run:
                layout.append(Segment(f"text{len(layout)}", run, "understanding", causal=True))
                run = 0
            j = tokens.index(end_id, i)
            layout.append(Segment(f"image{len(layout)}", j - i + 1, "understanding"))
            i = j + 1
        else:
            run += 1
            i += 1
    if run:
        layout.append(Segment(f"text{len(layout)}", run, "understanding", causal=True))
    return layout


@pytest.mark.parametrize("image_attention", ["bidirectional", "causal"])
def test_ue_mask_options_match_the_rules(tiny_backbone, image_attention):
    from mot import FrozenQwen3VLExpert
    from mot.mask import ue_attention_mask
    from tests.mot._support import make_batch

    ue = FrozenQwen3VLExpert(
        tiny_backbone.ue._model, tiny_backbone.ue.processor, image_attention=image_attention
    )
    batch = make_batch(2, t=2, v=2, prompts=("turn left at the junction ahead", "go"))
    inputs = ue.encode(batch)
    ids, pad = inputs["input_ids"], inputs["padding_mask"].bool()
    cfg = ue.hf_config
    got = ue_attention_mask(
        ids, pad, vision_start_id=cfg.vision_start_token_id, vision_end_id=cfg.vision_end_token_id,
        image_attention=image_attention,
    )[:, 0]  # fmt: skip
    # What the UE actually ran with (the additive mask handed to HF) is the same mask.
    assert torch.equal(inputs["attention_mask"][:, 0] == 0, got)
    for i in range(ids.shape[0]):
        real = pad[i]
        layout = _ue_layout(ids[i][real], cfg.vision_start_token_id, cfg.vision_end_token_id)
        assert sum(seg.causal is False for seg in layout) == 4  # T x V = 4 image blocks
        if image_attention == "causal":
            layout = [Segment(seg.name, seg.length, seg.task, causal=True) for seg in layout]
        want = _brute_force(layout, cross_modal_causal=True)
        assert torch.equal(got[i][real][:, real], want)
        # Padding columns are visible to nobody but themselves.
        pad_cols = got[i][:, ~real] & ~torch.eye(len(real), dtype=torch.bool)[:, ~real]
        assert not pad_cols.any()
    # The two options differ exactly inside image blocks (bidirectional sees later patches).
    if image_attention == "bidirectional":
        assert bool(got[0][real][:, real].triu(1).any())


@pytest.mark.parametrize(
    "cross_modal,order",
    [(True, "route_first"), (False, "waypoints_first"), (True, "waypoints_first"), (False, "route_first")],
)
def test_ae_mask_options_match_the_rules(tiny_backbone, cross_modal, order):
    from mot import build_action_expert, preset_config

    config = preset_config("tiny", {"ae": {"cross_modal_causal": cross_modal, "plan_order": order}})
    ae = build_action_expert(config, tiny_backbone.ue.geometry)
    n_rgb, n_bev, n_state = ae.image_tokens.num_tokens, ae.bev_tokens.num_tokens, ae.state_tokens.num_tokens
    plan = [Segment("route", 20, "planning"), Segment("waypoints", 6, "planning")]
    layout = [
        Segment("ue", 1, "understanding", causal=True),
        Segment("rgb", n_rgb, "observation"),
        Segment("bev", n_bev, "observation"),
        Segment("state", n_state, "observation"),
        Segment("decision", 3, "decision"),
        *(plan if order == "route_first" else plan[::-1]),
    ]
    assert [s.name for s in ae.segments] == [s.name for s in layout[1:]]
    want = _brute_force(layout, cross_modal_causal=cross_modal)
    assert bool(want[1:, 0].all())  # every action token sees the UE
    assert torch.equal(ae.ae_mask, want[1:, 1:])


def test_default_mask_is_the_reference_layout():
    """Section 3.1's text and the public AutoMoT code: image blocks bidirectional inside the UE,
    each AE input group its own causal block, route before waypoints."""
    from mot import preset_config

    for name in ("tiny", "small", "bench", "paper"):
        config = preset_config(name)
        assert config.ue.image_attention == "bidirectional"
        assert config.ae.cross_modal_causal is True and config.ae.plan_order == "route_first"


def _doc_layout(images_causal: bool, order: str) -> list[Segment]:
    ue = [
        Segment("sys", 2, "understanding", causal=True),
        Segment("img1", 3, "understanding", causal=images_causal),
        Segment("img2", 3, "understanding", causal=images_causal),
        Segment("prompt", 1, "understanding", causal=True),
        Segment("cot", 2, "understanding", causal=True),
    ]
    plan = [Segment("route", 2, "planning"), Segment("wp", 2, "planning")]
    ae = [
        Segment("rgb", 2, "observation"),
        Segment("bev", 2, "observation"),
        Segment("state", 1, "observation"),
        Segment("dec", 2, "decision"),
    ]
    return ue + ae + (plan if order == "route_first" else plan[::-1])


@pytest.mark.parametrize("name", ["reference", "figure3"])
def test_docs_draw_the_masks_the_rules_give(name):
    """docs/mot.md draws both mask options; the drawings are what the rules produce."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "mot.md").read_text()
    block = text.split(f"<!-- mask-{name} -->", 1)[1].split(f"<!-- /mask-{name} -->", 1)[0]
    drawn = block.strip().strip("`").strip("\n")
    ue_labels = list("ssiiiiiiprr")
    if name == "reference":
        layout, labels, cross = _doc_layout(False, "route_first"), ue_labels + list("ccbbeddRRWW"), True
    else:
        layout, labels, cross = _doc_layout(True, "waypoints_first"), ue_labels + list("ccbbeddWWRR"), False
    mask = _brute_force(layout, cross_modal_causal=cross)
    assert torch.equal(hybrid_mask(layout, cross_modal_causal=cross), mask)
    assert drawn == render_mask(mask, labels)
