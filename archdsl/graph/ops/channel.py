"""Channel ops: take one of equal channel groups (`split`), interleave groups (`shuffle`).

ShuffleNetV2's unit needs both: half the channels go through untouched, half through
convolutions, and a shuffle lets the halves mix in the next unit. Neither has parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from archdsl.graph.ops.base import AttributeRuleError, Op, ShapeRuleError, attr, positive, register
from archdsl.graph.shapes import Shape, format_shape


def _channels(owner: str, x: Shape, groups: int, what: str) -> int:
    if not x:
        raise ShapeRuleError(f"`{owner}` needs channels, got a scalar")
    c = x[-1]
    if c % groups:
        raise ShapeRuleError(
            f"cannot {what} {c} channels into {groups} equal groups "
            f"(input {format_shape(x)}): {c} is not divisible by {groups}"
        )
    return c


@register
@dataclass(frozen=True)
class Split(Op):
    """One of `parts` equal groups of channels, as `torch.chunk`: `(..., C) -> (..., C / parts)`.

    `split 2 index 0` is the first half, `split 2 index 1` the second.
    """

    name = "split"
    signature = "`(..., C) -> (..., C / parts)`"
    positional = ("parts", "index")
    keywords = ("index",)
    parts: int = attr("int", doc="how many equal groups the channels are cut into")
    index: int = attr("int", 0, "which group to keep, from 0")

    def __post_init__(self) -> None:
        positive("split", parts=self.parts)
        if not 0 <= self.index < self.parts:
            raise AttributeRuleError(
                f"`split` index must be in 0..{self.parts - 1} for {self.parts} parts, "
                f"got {self.index}"
            )

    def infer(self, x: Shape) -> Shape:
        c = _channels(self.name, x, self.parts, "split")
        return (*x[:-1], c // self.parts)

    def describe(self) -> str:
        return f"part {self.index} of {self.parts}"


@register
@dataclass(frozen=True)
class Shuffle(Op):
    """ShuffleNet's channel shuffle: `groups` groups interleaved; shape unchanged.

    Channel `g * (C / groups) + i` moves to `i * groups + g`, as torchvision's
    `channel_shuffle` (view as groups x C/groups, transpose, flatten).
    """

    name = "shuffle"
    positional = ("groups",)
    groups: int = attr("int", doc="channel groups to interleave")

    def __post_init__(self) -> None:
        positive("shuffle", groups=self.groups)

    def infer(self, x: Shape) -> Shape:
        _channels(self.name, x, self.groups, "shuffle")
        return x

    def describe(self) -> str:
        return f"{self.groups} groups"
