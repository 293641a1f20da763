"""Hypothesis strategies for shapes, attribute values and ops, and ops written as spec calls.

Every op class has one entry in `OP_STRATEGIES` (a test checks it): given the input shape,
it draws only ops valid there, so nothing is filtered away."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from hypothesis import strategies as st

from archdsl.graph import ops
from archdsl.graph.shapes import Shape
from archdsl.lang import syntax as s
from archdsl.lang.kinds import to_expr
from archdsl.lang.source import Source, Span

_SOURCE = Source("<generated>", "")
_SPAN = Span(_SOURCE, 1, 1, 1, 2)


# Shapes -----------------------------------------------------------------------------------


def shapes(
    *,
    ranks: Sequence[int] = (3, 1),
    min_side: int = 1,
    max_side: int = 32,
    min_channels: int = 1,
    max_channels: int = 32,
) -> st.SearchStrategy[Shape]:
    """Per-example shapes: `(H, W, C)` images (rank 3) or `(D,)` feature vectors (rank 1).

    Requires the hypothesis package.

    Args:
        ranks: the ranks to draw, 3 and/or 1; shrinks toward the first.
        min_side, max_side: bounds of H and W.
        min_channels, max_channels: bounds of C, and of D.
    """
    sides = st.integers(min_side, max_side)
    channels = st.integers(min_channels, max_channels)
    choices = []
    for rank in ranks:
        if rank == 3:
            choices.append(st.tuples(sides, sides, channels))
        elif rank == 1:
            choices.append(st.tuples(channels))
        else:
            raise ValueError(f"ranks are 3 (HxWxC) or 1 (D), got {rank}")
    return st.one_of(choices)


# Ops ----------------------------------------------------------------------------------------

_OpStrategy: TypeAlias = Callable[[Shape, "_Limits", "int | None"], st.SearchStrategy[ops.Op]]
"""(input shape, limits, spatial) -> ops valid on that shape.

`spatial=None`: any output; `spatial=k`: the output keeps the rank and its height
and width are `ceil(H / k)`, `ceil(W / k)` (k = 1: keeps them); channels are free.
"""


_SIDE = st.integers(1, 64)
KIND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "int": _SIDE,
    "pair": st.tuples(_SIDE, _SIDE),
    "shape": st.lists(_SIDE, min_size=1, max_size=3).map(tuple),
    "padding": st.sampled_from(["same", "valid"])
    | st.tuples(st.integers(0, 4), st.integers(0, 4)).map(lambda p: ((p[0], p[0]), (p[1], p[1]))),
    "bool": st.booleans(),
    "float": st.floats(0, 10, allow_nan=False).map(lambda f: round(f, 3)),
    "enum": st.sampled_from(["auto", "projection"]),
}
"""Op values of each attribute kind (`lang.kinds.KINDS`), for round-trip tests; enum
values are drawn from the choices `enum:auto|projection`."""


@dataclass(frozen=True)
class _Limits:
    max_channels: int = 16
    max_kernel: int = 5
    max_stride: int = 3


OP_STRATEGIES: dict[type[ops.Op], _OpStrategy] = {}
"""The strategy that draws each op class, given an input shape; a test checks none is missing."""


def _strategy(*classes: type[ops.Op]) -> Callable[[_OpStrategy], _OpStrategy]:
    def register(function: _OpStrategy) -> _OpStrategy:
        for cls in classes:
            OP_STRATEGIES[cls] = function
        return function

    return register


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def _conv(draw: Any, x: Shape, limits: _Limits, spatial: int | None) -> ops.Op:
    h, w, c = x
    groups = draw(st.sampled_from(_divisors(c)[:4]))
    filters = groups * draw(st.integers(1, max(1, limits.max_channels // groups)))
    bias = draw(st.booleans())
    if spatial is not None:
        kernel = draw(st.integers(1, limits.max_kernel))
        dilation = draw(st.sampled_from([1, 1, 2]))
        return ops.Conv(
            filters,
            (kernel, kernel),
            (spatial, spatial),
            "same",
            bias,
            groups,
            (dilation, dilation),
        )
    padding_kind = draw(st.sampled_from(["valid", "same", "explicit"]))
    dilation = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    stride = (draw(st.integers(1, limits.max_stride)),) * 2
    pads = (0, 0)
    if padding_kind == "explicit":
        pads = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    kernel = tuple(
        # the dilated window must fit in the padded input
        draw(st.integers(1, max(1, min(limits.max_kernel, (side + 2 * pad - 1) // d + 1))))
        for side, pad, d in zip((h, w), pads, dilation, strict=True)
    )
    padding: Any = "same" if padding_kind == "same" else "valid"
    if padding_kind == "explicit":
        padding = ((pads[0], pads[0]), (pads[1], pads[1]))
    return ops.Conv(filters, kernel, stride, padding, bias, groups, dilation)  # type: ignore[arg-type]


@_strategy(ops.Conv)
def _conv_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    return _conv(x, limits, spatial) if len(x) == 3 else st.nothing()


@st.composite
def _pool(draw: Any, x: Shape, limits: _Limits, spatial: int | None, cls: type) -> ops.Op:
    h, w, _ = x
    if spatial is not None:
        window = draw(st.integers(1, 3))
        return cls((window, window), (spatial, spatial), "same")
    padding_kind = draw(st.sampled_from(["valid", "same", "explicit"]))
    if padding_kind == "same":
        window = draw(st.integers(1, 3))
        stride = draw(st.integers(1, limits.max_stride))
        return cls((window, window), (stride, stride), "same", draw(st.booleans()))
    window = tuple(draw(st.integers(1, max(1, min(3, side)))) for side in (h, w))
    stride = draw(st.none() | st.integers(1, limits.max_stride).map(lambda v: (v, v)))
    padding: Any = "valid"
    if padding_kind == "explicit":
        # PyTorch's rule, kept so that every generated network is valid there too
        pads = tuple(draw(st.integers(0, k // 2)) for k in window)
        padding = ((pads[0], pads[0]), (pads[1], pads[1]))
    return cls(window, stride, padding, draw(st.booleans()))


@_strategy(ops.MaxPool, ops.AvgPool)
def _pool_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    if len(x) != 3:
        return st.nothing()
    return st.sampled_from([ops.MaxPool, ops.AvgPool]).flatmap(
        lambda cls: _pool(x, limits, spatial, cls)
    )


@_strategy(ops.GlobalAvgPool, ops.GlobalMaxPool)
def _global_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    if len(x) != 3 or spatial is not None:
        return st.nothing()
    return st.sampled_from([ops.GlobalAvgPool(), ops.GlobalMaxPool()])


@_strategy(ops.Flatten)
def _flatten_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    return st.just(ops.Flatten()) if spatial is None or len(x) == 1 else st.nothing()


@_strategy(ops.Dense)
def _dense_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    if spatial not in (None, 1) and len(x) == 3:
        return st.nothing()
    return st.builds(ops.Dense, st.integers(1, limits.max_channels), st.booleans())


@_strategy(ops.Dropout)
def _dropout_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    if spatial not in (None, 1) and len(x) == 3:
        return st.nothing()
    return st.builds(ops.Dropout, st.sampled_from([0.5, 0.0, 0.1, 0.25]))


@_strategy(ops.BatchNorm)
def _batchnorm_strategy(
    x: Shape, limits: _Limits, spatial: int | None
) -> st.SearchStrategy[ops.Op]:
    if spatial not in (None, 1) and len(x) == 3:
        return st.nothing()
    return st.builds(ops.BatchNorm, st.sampled_from([1e-5, 1e-3]), st.sampled_from([0.9, 0.99]))


@_strategy(ops.LRN)
def _lrn_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    if len(x) != 3 or spatial not in (None, 1):
        return st.nothing()
    return st.builds(
        ops.LRN,
        st.integers(1, 7),
        st.sampled_from([1e-4, 1e-3]),
        st.sampled_from([0.75, 0.5]),
        st.sampled_from([2.0, 1.0]),
    )


_ACTIVATIONS = sorted(
    (cls for cls in ops.OPS.values() if issubclass(cls, ops.Activation)), key=lambda c: c.name
)
_MERGES = [cls for cls in ops.OPS.values() if issubclass(cls, ops.Merge)]


@_strategy(*_ACTIVATIONS)
def _activation_strategy(
    x: Shape, limits: _Limits, spatial: int | None
) -> st.SearchStrategy[ops.Op]:
    if spatial not in (None, 1) and len(x) == 3:
        return st.nothing()
    plain = [cls() for cls in _ACTIVATIONS if cls is not ops.LeakyRelu]
    return st.sampled_from(plain) | st.builds(ops.LeakyRelu, st.sampled_from([0.01, 0.1, 0.2]))


@_strategy(ops.Input)
def _input_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    return st.just(ops.Input(x))


@_strategy(*_MERGES, ops.Residual)
def _merge_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    """Ops that combine several operands of the shape `x` (not in `ops_for`)."""
    return st.sampled_from([cls() for cls in _MERGES]) | st.builds(
        ops.Residual, st.sampled_from(ops.SHORTCUTS)
    )


@_strategy(ops.Project, ops.ZeroPad)
def _shortcut_strategy(x: Shape, limits: _Limits, spatial: int | None) -> st.SearchStrategy[ops.Op]:
    """The shortcut ops `insert_projections` makes (not in `ops_for`)."""
    if len(x) not in (1, 3):
        return st.nothing()
    stride = st.just(1) if len(x) == 1 else st.integers(1, limits.max_stride)
    project = st.builds(
        ops.Project,
        st.integers(1, limits.max_channels),
        stride.map(lambda v: (v, v)),
        st.booleans(),
    )
    zeropad = st.builds(
        ops.ZeroPad, st.integers(x[-1], x[-1] + limits.max_channels), stride.map(lambda v: (v, v))
    )
    return project | zeropad


_INTERNAL = frozenset(name for name, cls in ops.OPS.items() if not cls.user_visible)


def ops_for(
    shape: Shape,
    *,
    names: Sequence[str] | None = None,
    max_channels: int = 16,
    max_kernel: int = 5,
    max_stride: int = 3,
    spatial: int | None = None,
) -> st.SearchStrategy[ops.Op]:
    """Layers valid on an input of `shape`: `op.infer(shape)` succeeds for every draw.

    Requires the hypothesis package.

    Args:
        shape: the per-example input shape.
        names: which ops (spec spellings, as `ops.OPS`) to draw from; default every
            user-visible layer except `input`. Internal ops (`add`, `concat`,
            `residual`, `project`, `zeropad`) may be named too.
        max_channels: the most filters or units an op gets.
        max_kernel: the largest kernel side.
        max_stride: the largest stride.
        spatial: None for any output shape; `k` for an output of the same rank with
            height and width `ceil(H / k)`, `ceil(W / k)` (1 keeps them).
    """
    limits = _Limits(max_channels, max_kernel, max_stride)
    if names is None:
        names = [n for n in ops.OPS if n not in _INTERNAL and n != "input"]
    unknown = sorted(n for n in names if ops.OPS.get(n) not in OP_STRATEGIES)
    if unknown:
        raise ValueError(f"no strategy for ops {unknown}")
    seen: set[int] = set()
    choices = []
    # one choice per strategy (the ten activations are one), simplest first
    for name in sorted(names, key=_op_order):
        function = OP_STRATEGIES[ops.OPS[name]]
        if id(function) in seen:
            continue
        seen.add(id(function))
        choices.append(function(shape, limits, spatial))
    return st.one_of(choices)


def _op_order(name: str) -> tuple[int, str]:
    order = [
        "relu",
        "batchnorm",
        "dropout",
        "dense",
        "conv",
        "maxpool",
        "flatten",
        "globalavgpool",
        "lrn",
    ]
    return (order.index(name) if name in order else len(order), name)


# Ops as spec text -----------------------------------------------------------------------------


_CHANNEL_FIELD = {"conv": "filters", "dense": "units"}


def op_call(op: ops.Op, *, style: int = 0, channels: s.Expr | None = None) -> s.Call:
    """The spec call that builds `op`, e.g. `conv 16 3x3 stride 2 same`, as a syntax tree.

    Args:
        op: a user-visible layer.
        style: which of the equivalent spellings to use (`stride 2` or `stride = 2`,
            `same` or `padding = same`, `3` or `3x3`); any integer.
        channels: an expression (a block parameter) to write instead of the op's
            filters or units.
    """
    cls = type(op)
    fields = {f.name: f for f in dataclasses.fields(op)}
    values = {name: getattr(op, name) for name in fields}
    if channels is not None:
        values.pop(_CHANNEL_FIELD[cls.name])
    args: list[s.Expr] = []
    kwargs: list[s.Kwarg] = []
    positional = list(cls.positional)
    # positional attributes up to the last one that is needed or not the default
    needed = [
        p
        for p in positional
        if p not in values
        or values[p] != fields[p].default
        or fields[p].default is dataclasses.MISSING
    ]
    last = max((positional.index(p) for p in needed), default=-1)
    for index, name in enumerate(positional[: last + 1]):
        if name not in values:
            assert channels is not None
            args.append(channels)
            continue
        args.append(to_expr(fields[name].metadata["kind"], values[name], style + index))
    rest = [n for n in fields if n not in positional[: last + 1]]
    for offset, name in enumerate(rest):
        value = values[name]
        if value == fields[name].default:
            continue
        variant = (style >> (offset % 8)) & 1
        flag = next(
            (
                word
                for word, (key, flag_value) in cls.flags.items()
                if key == name and flag_value == value
            ),
            None,
        )
        expr = to_expr(fields[name].metadata["kind"], value, style + offset)
        if flag is not None and variant:
            args.append(_name(flag))
        elif name in cls.keywords and variant:
            args.extend([_name(name), expr])
        else:
            kwargs.append(s.Kwarg(name=_ident(name), value=expr, span=_SPAN))
    return s.Call(op=_ident(cls.name), args=tuple(args), kwargs=tuple(kwargs), span=_SPAN)


def _int(value: int) -> s.Int:
    return s.Int(value=value, span=_SPAN)


def _name(text: str) -> s.Name:
    return s.Name(id=text, span=_SPAN)


def _ident(text: str) -> s.Ident:
    return s.Ident(text=text, span=_SPAN)
