"""Whole valid networks drawn by construction: the generator, its rendering as syntax, and
the `networks`, `graphs` and `spec_texts` strategies."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from archdsl.frontend import build_graph_text
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.shapes import Shape
from archdsl.lang import syntax as s
from archdsl.lang.values import Value
from archdsl.testing.model import (
    _Aux,
    _Block,
    _Call,
    _Group,
    _Invalid,
    _Item,
    _Layer,
    _Merge,
    _Model,
    _Repeat,
    _Residual,
    _Step,
    _Tally,
)
from archdsl.testing.strategies import (
    _CHANNEL_FIELD,
    _MERGES,
    _SOURCE,
    _SPAN,
    _ident,
    _int,
    _Limits,
    _name,
    op_call,
    ops_for,
    shapes,
)
from archdsl.tools.fmt import unparse


@dataclass(frozen=True)
class Network:
    """A generated network: its spec (tree and text) and what it must compile to."""

    spec: s.Spec = field(repr=False)
    text: str
    name: str
    input_shape: Shape
    output_shape: Shape
    params: int
    """Learned parameters, as `archdsl compile` counts them (aux heads included)."""
    arguments: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """Declared ranges: every network argument in `low..high` compiles."""

    def graph(self, **arguments: Value) -> Graph:
        """The checked graph (parse, lower, passes); raises `ArchError` if it fails."""
        return build_graph_text(self.text, f"{self.name}.arch", **arguments)


@dataclass
class _Context:
    env: dict[str, Value]
    channel_params: tuple[str, ...]
    depth: int
    in_block: bool


class _Generator:
    def __init__(
        self,
        draw: Any,
        *,
        max_depth: int,
        max_length: int,
        limits: _Limits,
        blocks: bool,
        aux: bool,
    ) -> None:
        self.draw = draw
        self.max_depth = max_depth
        self.max_length = max_length
        self.limits = limits
        self.use_blocks = blocks
        self.use_aux = aux
        self.blocks: dict[str, _Block] = {}
        self.model = _Model(self.blocks)
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def alias(self) -> str | None:
        return self.fresh("t") if self.draw(st.integers(0, 5)) == 0 else None

    # bodies
    def body(
        self,
        x: Shape,
        ctx: _Context,
        *,
        spatial: int | None = None,
        channels: int | None = None,
        length: int | None = None,
    ) -> tuple[tuple[_Item, ...], Shape]:
        """A non-empty body from `x`; with `spatial`/`channels`, one that ends on that plan."""
        n = length or self.draw(st.integers(1, self.max_length))
        down = self.draw(st.integers(0, n - 1)) if spatial not in (None, 1) else -1
        items: list[_Item] = []
        for index in range(n):
            if index == down:
                step = self.layer(x, ctx, spatial=spatial)
            else:
                step = self.item(x, ctx, keep=spatial is not None)
            items.append(step)
            if isinstance(step, _Step):
                x = self.model.step(step.what, x, ctx.env, _Tally())
        if spatial is not None and down < 0 and spatial != 1 and len(x) == 3:
            raise AssertionError("a plan body lost its downsampling step")
        if channels is not None and x[-1] != channels:
            fix = ops.Conv(channels, (1, 1)) if len(x) == 3 else ops.Dense(channels)
            items.append(_Step(_Layer(fix, style=self.draw(st.integers(0, 255)))))
            x = self.model.step(items[-1].what, x, ctx.env, _Tally())  # type: ignore[union-attr]
        return tuple(items), x

    def item(self, x: Shape, ctx: _Context, *, keep: bool) -> _Item:
        kinds = ["layer"]
        if ctx.depth < self.max_depth:
            kinds += ["residual", "merge", "repeat", "group"]
            if self.use_blocks and not ctx.in_block:
                kinds.append("block")
            if self.use_aux and ctx.depth == 0 and not ctx.in_block and not keep:
                kinds.append("aux")
        kind = self.draw(st.sampled_from(kinds))
        spatial = 1 if keep else None
        if kind == "layer":
            return self.layer(x, ctx, spatial=spatial)
        inner = dataclasses.replace(ctx, depth=ctx.depth + 1)
        if kind == "aux":
            body, _ = self.body(x, inner, length=self.draw(st.integers(1, 2)))
            weight = self.draw(st.sampled_from([0.3, 0.5, 1.0]))
            return _Aux(self.fresh("aux"), weight, body)
        if kind == "residual":
            return _Step(self.residual(x, inner, keep=keep), self.alias())
        if kind == "merge":
            return _Step(self.merge(x, inner, keep=keep), self.alias())
        if kind == "repeat":
            body, _ = self.body(x, inner, spatial=spatial, length=self.draw(st.integers(1, 2)))
            count = self.draw(st.integers(1, 3))
            current = x
            for done in range(count):
                try:
                    current = self.model.run(body, current, ctx.env, _Tally())
                except _Invalid:
                    count = done  # the body fits once at least: it was drawn for `x`
                    break
            return _Step(_Repeat(max(count, 1), body), self.alias())
        if kind == "group":
            body, _ = self.body(x, inner, spatial=spatial, length=self.draw(st.integers(1, 2)))
            return _Step(_Group(body), self.alias())
        return _Step(self.call(x, ctx, keep=keep), self.alias())

    def layer(self, x: Shape, ctx: _Context, *, spatial: int | None) -> _Step:
        op = self.draw(
            ops_for(
                x,
                spatial=spatial,
                max_channels=self.limits.max_channels,
                max_kernel=self.limits.max_kernel,
                max_stride=self.limits.max_stride,
            )
        )
        channels: s.Expr | None = None
        if op.name in _CHANNEL_FIELD and ctx.channel_params and self.draw(st.booleans()):
            param = self.draw(st.sampled_from(ctx.channel_params))
            form = self.draw(st.sampled_from(["p", "p", "p * 2", "p + 1"]))
            channels = _name(param)
            if form != "p":
                channels = s.BinOp(op=form[2], left=channels, right=_int(int(form[-1])), span=_SPAN)
            if isinstance(op, ops.Conv):
                op = dataclasses.replace(op, groups=1)
            layer = _Layer(op, channels)
            try:
                self.model.layer(layer, x, ctx.env, _Tally())
            except _Invalid:
                layer = _Layer(op)
        else:
            layer = _Layer(op)
        return _Step(dataclasses.replace(layer, style=self.draw(st.integers(0, 255))), self.alias())

    def residual(self, x: Shape, ctx: _Context, *, keep: bool) -> _Residual:
        mode = self.draw(st.sampled_from(ops.SHORTCUTS))
        if mode == "identity":
            body, _ = self.body(x, ctx, spatial=1, channels=x[-1])
            return _Residual(mode, body)
        stride = 1 if keep or len(x) == 1 else self.draw(st.integers(1, 2))
        channels = None
        if mode == "zeropad":
            channels = self.draw(st.integers(x[-1], x[-1] + self.limits.max_channels))
        body, _ = self.body(x, ctx, spatial=stride, channels=channels)
        return _Residual(mode, body)

    def merge(self, x: Shape, ctx: _Context, *, keep: bool) -> _Merge:
        # Every merge but `concat` (which sums channels) takes branches of one shape.
        kind = self.draw(st.sampled_from([cls.name for cls in _MERGES]))
        stride = 1 if keep or len(x) == 1 else self.draw(st.integers(1, 2))
        channels = self.draw(st.integers(1, self.limits.max_channels)) if kind != "concat" else None
        n = self.draw(st.integers(2, 3))
        branches = tuple(
            self.body(
                x, ctx, spatial=stride, channels=channels, length=self.draw(st.integers(1, 2))
            )[0]
            for _ in range(n)
        )
        aliases = tuple(
            self.fresh("b") if self.draw(st.integers(0, 3)) == 0 else None for _ in range(n)
        )
        return _Merge(kind, branches, aliases)

    def call(self, x: Shape, ctx: _Context, *, keep: bool) -> _Call:
        for block in self.blocks.values():
            if keep and not block.keeps_spatial:
                continue
            if not self.draw(st.booleans()):
                continue
            for args in (self.block_args(block), block.first_args):
                try:
                    self.model.run(block.body, x, self.block_env(block, args), _Tally())
                except _Invalid:
                    continue
                return _Call(block.name, args, self.draw(st.booleans()))
        return self.new_block(x, keep=keep)

    def block_args(self, block: _Block) -> tuple[int, ...]:
        required = sum(d is None for d in block.defaults)
        n = self.draw(st.integers(required, len(block.params)))
        return tuple(self.draw(st.integers(1, self.limits.max_channels)) for _ in range(n))

    def block_env(self, block: _Block, args: tuple[int, ...]) -> dict[str, Value]:
        env: dict[str, Value] = dict(zip(block.params, block.defaults, strict=True))  # type: ignore[arg-type]
        env.update(zip(block.params, args, strict=False))
        return env

    def new_block(self, x: Shape, *, keep: bool) -> _Call:
        name = self.fresh("block")
        params = ("c", "d")[: self.draw(st.integers(1, 2))]
        defaults = (
            None,
            *(self.draw(st.integers(1, self.limits.max_channels)) for _ in params[1:]),
        )
        first = tuple(
            self.draw(st.integers(1, self.limits.max_channels))
            for _ in range(1 if len(params) == 1 else self.draw(st.integers(1, 2)))
        )
        block = _Block(name, params, defaults, first, (), keep)  # type: ignore[arg-type]
        env = self.block_env(block, first)
        ctx = _Context(env, params, 1, True)
        body, _ = self.body(
            x, ctx, spatial=1 if keep else None, length=self.draw(st.integers(1, 3))
        )
        self.blocks[name] = dataclasses.replace(block, body=body)
        return _Call(name, first, self.draw(st.booleans()))


# Networks: rendering the model as a syntax tree ------------------------------------------------


class _Renderer:
    def __init__(self, draw: Any, model: _Model) -> None:
        self.draw = draw
        self.model = model

    def body(
        self,
        items: Sequence[_Item],
        *,
        x: Shape | None = None,
        env: Mapping[str, Value] | None = None,
    ) -> tuple[s.Stmt, ...]:
        """Statements for items; with `x`, chains may end in a `: shape` assertion."""
        stmts: list[s.Stmt] = []
        index = 0
        while index < len(items):
            item = items[index]
            if isinstance(item, _Aux):
                stmts.append(
                    s.Aux(
                        name=_ident(item.name),
                        kwargs=(
                            s.Kwarg(
                                name=_ident("weight"),
                                value=s.Float(value=item.weight, span=_SPAN),
                                span=_SPAN,
                            ),
                        )
                        if item.weight != 0.3 or self.draw(st.booleans())
                        else (),
                        body=self.body(item.body),
                        span=_SPAN,
                    )
                )
                index += 1
                continue
            run = 1
            while (
                index + run < len(items)
                and isinstance(items[index + run], _Step)
                and self.draw(st.integers(0, 2)) == 0
            ):
                run += 1
            steps = items[index : index + run]
            check = None
            if x is not None and env is not None:
                for step in steps:
                    x = self.model.step(step.what, x, env, _Tally())  # type: ignore[union-attr]
                if self.draw(st.integers(0, 2)) == 0:
                    check = s.Size(value=x, span=_SPAN) if len(x) > 1 else _int(x[0])
            stmts.append(
                s.Chain(
                    source=None,
                    steps=tuple(self.step(step) for step in steps),  # type: ignore[arg-type]
                    check=check,
                    frozen=self.draw(st.integers(0, 19)) == 0,
                    span=_SPAN,
                )
            )
            index += run
        return tuple(stmts)

    def step(self, step: _Step) -> s.Step:
        alias = _ident(step.alias) if step.alias else None
        what = step.what
        if isinstance(what, _Layer):
            call = op_call(what.op, style=what.style, channels=what.channels)
            return dataclasses.replace(call, alias=alias)
        if isinstance(what, _Residual):
            kwargs = ()
            if what.mode != "auto" or self.draw(st.booleans()):
                kwargs = (s.Kwarg(name=_ident("shortcut"), value=_name(what.mode), span=_SPAN),)
            return s.Residual(kwargs=kwargs, body=self.body(what.body), alias=alias, span=_SPAN)
        if isinstance(what, _Merge):
            branches = tuple(
                s.Branch(body=self.body(b), alias=_ident(a) if a else None, span=_SPAN)
                for b, a in zip(what.branches, what.aliases, strict=True)
            )
            return s.Merge(kind=what.kind, branches=branches, alias=alias, span=_SPAN)
        if isinstance(what, _Repeat):
            return s.Repeat(
                count=_int(what.count), body=self.body(what.body), alias=alias, span=_SPAN
            )
        if isinstance(what, _Group):
            return s.Group(body=self.body(what.body), alias=alias, span=_SPAN)
        assert isinstance(what, _Call)
        block = self.model.blocks[what.block]
        args: tuple[s.Expr, ...] = tuple(_int(a) for a in what.args)
        kwargs: tuple[s.Kwarg, ...] = ()
        if what.keyword:
            kwargs = tuple(
                s.Kwarg(name=_ident(p), value=_int(a), span=_SPAN)
                for p, a in zip(block.params, what.args, strict=False)
            )
            args = ()
        return s.Call(op=_ident(block.name), args=args, kwargs=kwargs, alias=alias, span=_SPAN)

    def block(self, block: _Block) -> s.BlockDef:
        params = tuple(
            s.Param(name=_ident(p), default=_int(d) if d is not None else None, span=_SPAN)
            for p, d in zip(block.params, block.defaults, strict=True)
        )
        return s.BlockDef(
            name=_ident(block.name), params=params, body=self.body(block.body), span=_SPAN
        )


@st.composite
def networks(
    draw: Any,
    *,
    max_depth: int = 2,
    max_length: int = 4,
    min_side: int = 4,
    max_side: int = 24,
    max_channels: int = 16,
    max_kernel: int = 5,
    ranks: Sequence[int] = (3, 1),
    blocks: bool = True,
    aux: bool = True,
    params: bool = True,
) -> Network:
    """Whole valid networks, built by construction, with what they must compile to.

    Requires the hypothesis package.

    Every construct of the language appears: chains of layers (every user-visible
    op), `repeat`, `residual` with each `shortcut` kind (bodies drawn to fit it:
    `identity` keeps the shape, `zeropad` widens), `concat` and `add` branches
    (drawn to agree on the spatial size, and for `add` on channels), `aux` heads,
    `{ }` groups, `frozen` chains, `as` names, `: shape` assertions, blocks with
    parameters used in arithmetic (`conv c * 2 3x3`), and network parameters with a
    declared range (`size = 16 in 12..20`) over which the network is valid.

    Args:
        max_depth: how deep constructs nest.
        max_length: the most statements in a body.
        min_side, max_side: bounds of the input's height and width.
        max_channels: the most input channels, filters or units.
        max_kernel: the largest kernel side.
        ranks: input ranks to draw (3: HxWxC, 1: D).
        blocks: define and call blocks.
        aux: add auxiliary heads.
        params: give the network parameters (`size`, `width`) and a `size` range.
    """
    limits = _Limits(max_channels, max_kernel)
    x = draw(shapes(ranks=ranks, min_side=min_side, max_side=max_side, max_channels=max_channels))
    size_param = params and len(x) == 3 and draw(st.booleans())
    if size_param:
        x = (x[0], x[0], x[2])
    width = draw(st.integers(1, max_channels)) if params and draw(st.booleans()) else None
    env: dict[str, Value] = {}
    if size_param:
        env["size"] = x[0]
    if width is not None:
        env["width"] = width
    generator = _Generator(
        draw, max_depth=max_depth, max_length=max_length, limits=limits, blocks=blocks, aux=aux
    )
    ctx = _Context(env, ("width",) if width is not None else (), 0, False)
    body, _ = generator.body(x, ctx)
    tally = _Tally()
    model = generator.model
    out = model.run(body, x, env, tally)

    network_params: list[s.Param] = []
    arguments: dict[str, tuple[int, int]] = {}
    if size_param:
        low, high = _valid_range(
            lambda v: model.run(body, (v, v, x[2]), {**env, "size": v}, _Tally()), x[0], draw
        )
        ranged = draw(st.integers(0, 3)) > 0
        if ranged:
            arguments["size"] = (low, high)
        network_params.append(
            s.Param(
                name=_ident("size"),
                default=_int(x[0]),
                low=_int(low) if ranged else None,
                high=_int(high) if ranged else None,
                span=_SPAN,
            )
        )
    if width is not None:
        network_params.append(s.Param(name=_ident("width"), default=_int(width), span=_SPAN))

    renderer = _Renderer(draw, model)
    input_arg: s.Expr = s.Size(value=x, span=_SPAN) if len(x) > 1 else _int(x[0])
    if size_param:
        input_arg = s.Dims(parts=(_name("size"), _name("size"), _int(x[2])), span=_SPAN)
    first = s.Chain(
        source=None,
        steps=(s.Call(op=_ident("input"), args=(input_arg,), kwargs=(), span=_SPAN),),
        check=None,
        span=_SPAN,
    )
    checks = not size_param
    stmts = renderer.body(body, x=x if checks else None, env=env if checks else None)
    name = "Net"
    network = s.NetworkDef(
        name=_ident(name), params=tuple(network_params), body=(first, *stmts), span=_SPAN
    )
    items = (*(renderer.block(b) for b in generator.blocks.values()), network)
    spec = s.Spec(items=items, source=_SOURCE, span=_SPAN)
    return Network(spec, unparse(spec), name, x, out, tally.params, arguments)


def _valid_range(run: Callable[[int], Any], default: int, draw: Any) -> tuple[int, int]:
    """The widest range around `default` (up to a drawn reach) where `run` succeeds."""
    reach = draw(st.integers(0, 8))
    low = high = default
    while low > max(1, default - reach):
        try:
            run(low - 1)
        except _Invalid:
            break
        low -= 1
    while high < default + reach:
        try:
            run(high + 1)
        except _Invalid:
            break
        high += 1
    return low, high


def graphs(**kwargs: Any) -> st.SearchStrategy[Graph]:
    """The checked graphs of `networks(**kwargs)`.

    Requires the hypothesis package.
    """
    return networks(**kwargs).map(lambda network: network.graph())


def spec_texts(**kwargs: Any) -> st.SearchStrategy[str]:
    """The text of valid specs: `networks(**kwargs)` in the canonical layout.

    Requires the hypothesis package.
    """
    return networks(**kwargs).map(lambda network: network.text)
