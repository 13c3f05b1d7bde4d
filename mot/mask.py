"""The hybrid attention mask of the MoT backbone (paper section 3.1 and the figure-3 text).

A sequence is a list of `Segment`s (contiguous runs of tokens), each labelled with its task and
whether it is causal (language). The rules:

- causal across tasks, in order of appearance (understanding -> ... -> decision -> planning):
  a token sees every token of earlier tasks and none of later tasks;
- bidirectional inside a task, across its modalities (or, with `cross_modal_causal=True`, causal
  across the modalities of a task and bidirectional inside each modality);
- causal inside a causal segment (language: every token sees itself and what precedes it).

As in openpi's pi0, every token carries a "starts a new block" flag; the cumulative sum of those
flags is the token's block id and token i may attend to token j iff block[j] <= block[i].

The understanding expert's own rows (`ue_attention_mask`): its language (system prompt, user
prompt, generated reasoning) is causal; each image block (`<|vision_start|>`, its patch tokens,
`<|vision_end|>`) is either one bidirectional block (`image_attention="bidirectional"`, the paper's
"self-modal bidirectional" and the public AutoMoT code's `prepare_kv_cache`) or causal like the rest
(`"causal"`, Qwen3-VL as pretrained). Consecutive image blocks never see later ones: every block is
its own modality instance, i.e. the UE rows are `hybrid_mask(ue_segments, cross_modal_causal=True)`.
The action expert's rows see every real UE token.

Drawn example (`render_mask`, x = may attend; u: 3 UE tokens, o: 2 observation tokens,
d: 2 decision queries, p: 2 planning queries):

      u u u o o d d p p
    u x . . . . . . . .
    u x x . . . . . . .
    u x x x . . . . . .
    o x x x x x . . . .
    o x x x x x . . . .
    d x x x x x x x . .
    d x x x x x x x . .
    p x x x x x x x x x
    p x x x x x x x x x
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from automot.checks import check_positive


@dataclass(frozen=True)
class Segment:
    """A contiguous run of `length` tokens of one modality (`name`) of one `task`."""

    name: str
    length: int
    task: str
    causal: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.length, int) or self.length < 0:
            raise ValueError(f"Segment.length ({self.name}): expected an int >= 0, got {self.length!r}")
        if not self.task:
            raise ValueError(f"Segment.task ({self.name}): expected a non-empty task name, got {self.task!r}")


def block_ids(segments: Sequence[Segment], *, cross_modal_causal: bool = False) -> torch.Tensor:
    """(L,) long: the cumulative sum of "starts a new block" flags over the segment layout.

    Always on the CPU (a layout is small; callers move the mask where they need it).
    """
    _check_layout(segments)
    flags: list[torch.Tensor] = []
    prev_task: str | None = None
    prev_causal = False
    for seg in segments:
        if seg.length == 0:
            continue
        f = torch.zeros(seg.length, dtype=torch.long, device="cpu")
        if seg.causal:
            f[:] = 1
        elif seg.task != prev_task or cross_modal_causal or prev_causal:
            # After a causal run a new block must start, or its last token would see this segment.
            f[0] = 1
        flags.append(f)
        prev_task, prev_causal = seg.task, seg.causal
    if not flags:
        return torch.zeros(0, dtype=torch.long, device="cpu")
    return torch.cumsum(torch.cat(flags), dim=0)


def hybrid_mask(
    segments: Sequence[Segment], *, cross_modal_causal: bool = False, rows: slice | None = None
) -> torch.Tensor:
    """Boolean attention mask (L, L) for `segments`, True = query row may attend key column.

    `rows` selects a range of query rows (e.g. only the action expert's), giving (len(rows), L)
    without building the full square.
    """
    blocks = block_ids(segments, cross_modal_causal=cross_modal_causal)
    q = blocks if rows is None else blocks[rows]
    return blocks[None, :] <= q[:, None]


def render_mask(mask: torch.Tensor, labels: Sequence[str]) -> str:
    """ASCII drawing of a square mask: one row per query, `x` where it may attend."""
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1] or mask.shape[0] != len(labels):
        raise ValueError(
            f"render_mask: expected a square mask matching {len(labels)} labels, got shape {tuple(mask.shape)}"
        )
    width = max((len(s) for s in labels), default=1)
    head = " " * width + " " + " ".join(labels)
    lines = [head.rstrip()]
    for label, row in zip(labels, mask.tolist()):
        lines.append(f"{label:<{width}} " + " ".join("x" if v else "." for v in row))
    return "\n".join(lines)


def segment_slices(segments: Sequence[Segment]) -> dict[str, slice]:
    """Positions of each named segment in the concatenated sequence."""
    out: dict[str, slice] = {}
    start = 0
    for seg in segments:
        if seg.name in out:
            raise ValueError(f"segments: expected unique names, got {seg.name!r} twice")
        out[seg.name] = slice(start, start + seg.length)
        start += seg.length
    return out


def _check_layout(segments: Sequence[Segment]) -> None:
    check_positive("segments (count)", len(segments))
    seen: list[str] = []
    for seg in segments:
        if not isinstance(seg, Segment):
            raise ValueError(f"segments: expected Segment entries, got {type(seg).__name__}")
        if seen and seg.task == seen[-1]:
            continue
        if seg.task in seen:
            raise ValueError(
                f"segments: expected each task's segments to be contiguous, got task {seg.task!r} again after "
                f"{seen[-1]!r} (task order so far {seen})"
            )
        seen.append(seg.task)


UE_IMAGE_ATTENTION = ("causal", "bidirectional")


def ue_block_flags(
    input_ids: torch.Tensor, *, vision_start_id: int, vision_end_id: int, image_attention: str
) -> torch.Tensor:
    """(B, S) long "starts a new block" flags of UE token ids (the understanding task's segments).

    Every token starts a block (causal language), except, with `image_attention="bidirectional"`,
    the tokens of an image block after its `<|vision_start|>`: the whole block is one bidirectional
    block. Raises ValueError on unbalanced or nested vision start/end tokens.
    """
    if image_attention not in UE_IMAGE_ATTENTION:
        raise ValueError(
            f"image_attention: expected one of {list(UE_IMAGE_ATTENTION)}, got {image_attention!r}"
        )
    is_start = input_ids == vision_start_id
    is_end = input_ids == vision_end_id
    # Open blocks at each token: starts so far (inclusive) minus ends strictly before it.
    depth = torch.cumsum(is_start.long(), 1) - (torch.cumsum(is_end.long(), 1) - is_end.long())
    if bool((depth < 0).any() or (depth > 1).any() or (depth[:, -1] - is_end[:, -1].long() != 0).any()):
        raise ValueError(
            "input_ids: expected balanced, non-nested <|vision_start|> ... <|vision_end|> blocks, got "
            f"{is_start.sum(1).tolist()} starts and {is_end.sum(1).tolist()} ends per sample"
        )
    flags = torch.ones_like(input_ids, dtype=torch.long)
    if image_attention == "bidirectional":
        flags[(depth > 0) & ~is_start] = 0
    return flags


def ue_attention_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    vision_start_id: int,
    vision_end_id: int,
    image_attention: str,
) -> torch.Tensor:
    """(B, 1, S, S) bool mask of the UE's own prefill, True = may attend.

    input_ids (B, S), attention_mask (B, S) (1 = real token, 0 = padding). Columns of padding are
    never visible; a padded row sees itself only, so its (discarded) output stays finite.
    """
    flags = ue_block_flags(
        input_ids,
        vision_start_id=vision_start_id,
        vision_end_id=vision_end_id,
        image_attention=image_attention,
    )
    blocks = torch.cumsum(flags, dim=1)
    allowed = (blocks[:, None, :] <= blocks[:, :, None]) & attention_mask.bool()[:, None, :]
    eye = torch.eye(input_ids.shape[1], dtype=torch.bool, device=input_ids.device)
    return (allowed | eye)[:, None]
