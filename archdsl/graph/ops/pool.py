"""Pooling: windowed max and average, and their global forms."""

from __future__ import annotations

from dataclasses import dataclass

from archdsl.graph.ops.base import (
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


@dataclass(frozen=True)
class _Pool(Op):
    """Windowed reduction: `(H, W, C) -> (H', W', C)`; stride defaults to the window."""

    positional = ("window",)
    signature = "`(H, W, C) -> (H', W', C)`"
    keywords = ("stride", "padding")
    flags = {
        "same": ("padding", "same"),
        "valid": ("padding", "valid"),
        "ceil": ("ceil", True),
    }
    window: tuple[int, int] = attr("pair", doc="window, `3x3` or `3`")
    stride: tuple[int, int] | None = attr("pair", None, "defaults to the window")
    padding: Padding = padding_attr()
    ceil: bool = attr("bool", False, "Caffe's ceil mode: a last partial window counts")

    def __post_init__(self) -> None:
        positive(self.name, window=self.window, stride=self.stride)
        check_padding(self.name, self.padding)

    @property
    def strides(self) -> tuple[int, int]:
        """The stride in force: the window when none was given."""
        return self.stride or self.window

    def infer(self, x: Shape) -> Shape:
        if not isinstance(self.padding, str):
            half = (self.window[0] // 2, self.window[1] // 2)
            (top, bottom), (left, right) = self.padding
            if max(top, bottom) > half[0] or max(left, right) > half[1]:
                raise ShapeRuleError(
                    f"padding {self.padding[0][0]} is more than half the "
                    f"{fmt_pair(self.window)} window: a window could lie wholly in the padding"
                )
        h, w = windowed(self.name, x, self.window, self.strides, self.padding, ceil_mode=self.ceil)
        return (h, w, x[2])

    def describe(self) -> str:
        parts = [fmt_pair(self.window), f"/{self.strides[0]}"]
        parts.append(fmt_padding(self.padding))
        if self.ceil:
            parts.append("ceil")
        return " ".join(parts)


@register
@dataclass(frozen=True)
class MaxPool(_Pool):
    """Max pooling: `(H, W, C) -> (H', W', C)`."""

    name = "maxpool"


@register
@dataclass(frozen=True)
class AvgPool(_Pool):
    """Average pooling (padding counted, as Caffe and PyTorch): `(H, W, C) -> (H', W', C)`."""

    name = "avgpool"


@register
@dataclass(frozen=True)
class GlobalAvgPool(Op):
    """Mean over the spatial axes: `(H, W, C) -> (C,)`."""

    name = "globalavgpool"
    signature = "`(H, W, C) -> (C,)`"

    def infer(self, x: Shape) -> Shape:
        return (rank3(self.name, x)[2],)


@register
@dataclass(frozen=True)
class GlobalMaxPool(Op):
    """Max over the spatial axes: `(H, W, C) -> (C,)`."""

    name = "globalmaxpool"
    signature = "`(H, W, C) -> (C,)`"

    def infer(self, x: Shape) -> Shape:
        return (rank3(self.name, x)[2],)
