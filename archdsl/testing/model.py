"""The network generator's own model of what it builds: the shape each construct gives
and the parameters it holds, computed without the compiler (so the two can be compared)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from archdsl.errors import ArchError
from archdsl.graph import ops
from archdsl.graph.shapes import Shape
from archdsl.lang import syntax as s
from archdsl.lang.values import Value, evaluate
from archdsl.testing.strategies import (
    _CHANNEL_FIELD,
)

# Networks: the generator's own model of what it built ----------------------------------------


class _Invalid(Exception):
    """The model says this instance would not compile (the generator then falls back)."""


@dataclass(frozen=True)
class _Layer:
    op: ops.Op
    channels: s.Expr | None = None
    """A parameter expression that gives the op's filters or units at each instance."""
    style: int = 0


@dataclass(frozen=True)
class _Residual:
    mode: str
    body: tuple[_Item, ...]


@dataclass(frozen=True)
class _Merge:
    kind: str
    branches: tuple[tuple[_Item, ...], ...]
    aliases: tuple[str | None, ...]


@dataclass(frozen=True)
class _Repeat:
    count: int
    body: tuple[_Item, ...]


@dataclass(frozen=True)
class _Group:
    body: tuple[_Item, ...]


@dataclass(frozen=True)
class _Call:
    block: str
    args: tuple[int, ...]
    keyword: bool


@dataclass(frozen=True)
class _Step:
    what: _Layer | _Residual | _Merge | _Repeat | _Group | _Call
    alias: str | None = None


@dataclass(frozen=True)
class _Aux:
    name: str
    weight: float
    body: tuple[_Item, ...]


_Item: TypeAlias = "_Step | _Aux"


@dataclass(frozen=True)
class _Block:
    name: str
    params: tuple[str, ...]
    defaults: tuple[int | None, ...]
    first_args: tuple[int, ...]
    body: tuple[_Item, ...]
    keeps_spatial: bool


@dataclass
class _Tally:
    params: int = 0


class _Model:
    """Runs the generator's model: the shape each construct gives, and the parameters."""

    def __init__(self, blocks: Mapping[str, _Block]) -> None:
        self.blocks = blocks

    def run(
        self, items: Sequence[_Item], x: Shape, env: Mapping[str, Value], tally: _Tally
    ) -> Shape:
        for item in items:
            if isinstance(item, _Aux):
                self.run(item.body, x, env, tally)
            else:
                x = self.step(item.what, x, env, tally)
        return x

    def step(self, what: Any, x: Shape, env: Mapping[str, Value], tally: _Tally) -> Shape:
        if isinstance(what, _Layer):
            return self.layer(what, x, env, tally)
        if isinstance(what, _Residual):
            body = self.run(what.body, x, env, tally)
            tally.params += _shortcut_params(what.mode, body, x)
            return body
        if isinstance(what, _Merge):
            outs = [self.run(branch, x, env, tally) for branch in what.branches]
            return _infer(ops.OPS[what.kind](), *outs)
        if isinstance(what, _Repeat):
            for _ in range(what.count):
                x = self.run(what.body, x, env, tally)
            return x
        if isinstance(what, _Group):
            return self.run(what.body, x, env, tally)
        assert isinstance(what, _Call)
        block = self.blocks[what.block]
        inner = dict(zip(block.params, block.defaults, strict=True))
        inner.update(zip(block.params, what.args, strict=False))
        return self.run(block.body, x, inner, tally)  # type: ignore[arg-type]

    def layer(self, layer: _Layer, x: Shape, env: Mapping[str, Value], tally: _Tally) -> Shape:
        op = _instantiate(layer, env)
        out = _infer(op, x)
        tally.params += sum(math.prod(v) for v in op.param_shapes(x).values())
        return out


def _instantiate(layer: _Layer, env: Mapping[str, Value]) -> ops.Op:
    if layer.channels is None:
        return layer.op
    try:
        value = evaluate(layer.channels, env)
    except ArchError:
        raise _Invalid() from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Invalid()
    try:
        return dataclasses.replace(layer.op, **{_CHANNEL_FIELD[layer.op.name]: value})
    except ops.AttributeRuleError:
        raise _Invalid() from None


def _infer(op: ops.Op, *inputs: Shape) -> Shape:
    try:
        return op.infer(*inputs)
    except ops.ShapeRuleError:
        raise _Invalid() from None


def _shortcut_params(mode: str, body: Shape, x: Shape) -> int:
    """What the residual rule of LANGUAGE.md adds: nothing, a projection, or zero padding."""
    if mode == "identity":
        if body != x:
            raise _Invalid()
        return 0
    if body == x and mode != "projection":
        return 0
    if len(body) != len(x) or len(body) not in (1, 3):
        raise _Invalid()
    if len(body) == 3:
        stride = tuple(-(-a // b) for a, b in zip(x[:2], body[:2], strict=True))
    else:
        stride = (1, 1)
    if mode == "zeropad":
        if body[-1] < x[-1] or _infer(ops.ZeroPad(body[-1], stride), x) != body:  # type: ignore[arg-type]
            raise _Invalid()
        return 0
    project = ops.Project(body[-1], stride)  # type: ignore[arg-type]
    if _infer(project, x) != body:
        raise _Invalid()
    return sum(math.prod(v) for v in project.param_shapes(x).values())
