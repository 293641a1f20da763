"""Convolution: the windowed op with a kernel."""

from __future__ import annotations

import math
from dataclasses import dataclass

from archdsl.graph.ops.base import (
    AttributeRuleError,
    Op,
    ShapeRuleError,
    attr,
    check_padding,
    fmt_padding,
    fmt_pair,
    padding_attr,
    positive,
    rank3,
    register,
    windowed,
)
from archdsl.graph.shapes import Padding, Shape


@register
@dataclass(frozen=True)
class Conv(Op):
    """2-D convolution: `(H, W, C) -> (H', W', filters)`, kernel stored HWIO."""

    name = "conv"
    signature = "`(H, W, C) -> (H', W', filters)`"
    positional = ("filters", "kernel")
    keywords = ("stride", "padding", "groups", "dilation")
    flags = {"same": ("padding", "same"), "valid": ("padding", "valid")}
    filters: int = attr("int", doc="output channels")
    kernel: tuple[int, int] = attr("pair", doc="window, `5x5` or `5`")
    stride: tuple[int, int] = attr("pair", (1, 1))
    padding: Padding = padding_attr()
    bias: bool = attr("bool", True)
    groups: int = attr("int", 1, "channel groups (AlexNet's two GPUs: 2)")
    dilation: tuple[int, int] = attr("pair", (1, 1))

    def __post_init__(self) -> None:
        positive(
            "conv",
            filters=self.filters,
            kernel=self.kernel,
            stride=self.stride,
            groups=self.groups,
            dilation=self.dilation,
        )
        check_padding("conv", self.padding)
        if self.filters % self.groups:
            raise AttributeRuleError(
                f"`conv` filters (={self.filters}) must be divisible by groups (={self.groups})"
            )

    def infer(self, x: Shape) -> Shape:
        c = rank3("conv", x)[2]
        if c % self.groups:
            raise ShapeRuleError(
                f"input channels (={c}) must be divisible by groups (={self.groups})"
            )
        h, w = windowed("conv", x, self.kernel, self.stride, self.padding, self.dilation)
        return (h, w, self.filters)

    def param_shapes(self, x: Shape) -> dict[str, Shape]:
        kernel = (*self.kernel, x[-1] // self.groups, self.filters)
        return {"kernel": kernel, "bias": (self.filters,)} if self.bias else {"kernel": kernel}

    def macs(self, output: Shape, x: Shape) -> int:
        return math.prod(output) * self.kernel[0] * self.kernel[1] * (x[-1] // self.groups)

    def describe(self) -> str:
        parts = [str(self.filters), fmt_pair(self.kernel)]
        if self.stride != (1, 1):
            parts.append(
                f"/{self.stride[0]}"
                if self.stride[0] == self.stride[1]
                else f"/{fmt_pair(self.stride)}"
            )
        parts.append(fmt_padding(self.padding))
        if self.groups != 1:
            parts.append(f"groups {self.groups}")
        if self.dilation != (1, 1):
            parts.append(f"dilation {fmt_pair(self.dilation)}")
        if not self.bias:
            parts.append("no bias")
        return " ".join(parts)
