"""The network input: the one op with no inputs."""

from __future__ import annotations

from dataclasses import dataclass

from archdsl.graph.ops.base import Op, attr, positive, register
from archdsl.graph.shapes import Shape, format_shape


@register
@dataclass(frozen=True)
class Input(Op):
    """The network's input: `() -> shape`, per example (no batch axis)."""

    name = "input"
    signature = "`() -> shape`"
    arity = 0
    positional = ("shape",)
    shape: Shape = attr("shape", doc="per-example shape, HxWxC or D")

    def __post_init__(self) -> None:
        positive("input", shape=self.shape)

    def infer(self, *inputs: Shape) -> Shape:
        return self.shape

    def describe(self) -> str:
        return format_shape(self.shape)
