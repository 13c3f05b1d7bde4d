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

How the understanding expert's rows relate to its own mask: the UE is a frozen, pretrained causal
LM whose internal attention is never changed. Its segment is therefore labelled causal (every
token its own block), which makes the UE rows of the hybrid mask exactly the pretrained causal mask.
The UE's image tokens are causal too: that is how the pretrained Qwen3-VL computed them.

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
