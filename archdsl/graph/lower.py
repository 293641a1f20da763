"""`syntax` to `ir.Graph`: instantiate blocks, name every node (`bind` reads the arguments).

Naming (stable, so checkpoints and reports can rely on it):
- a layer is `scope.NAME` with `as NAME`, else `scope.op` (`conv`, `conv_1`, ...);
- a block call opens the scope `scope.NAME` with `as NAME`, else the next number
  (`0`, `1`, ...), like PyTorch's `nn.Sequential`;
- each `repeat` iteration opens a numbered scope; a block call that is the whole
  body of a repeat is that scope, so `repeat 3 { bottleneck(64) }` gives
  `0`, `1`, `2`, not `0.0`;
- `residual` and `{ }` bodies stay in the enclosing scope; `concat`/`add` branches
  are `MERGE.branch1`, ...; an `aux NAME` head is the scope `NAME` (a block call
  that is its whole body is that scope too).
"""

from __future__ import annotations

import dataclasses
import functools
from collections import ChainMap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archdsl.errors import ArchError, ArchNameError, ArchValueError, raise_all
from archdsl.graph import ops
from archdsl.graph.bind import (
    BindError,
    bind_block_arguments,
    bind_network_arguments,
    check_use_ranges,
)
from archdsl.graph.bind_memo import BindMemo
from archdsl.graph.expansion import MAX_BLOCK_DEPTH, MAX_NODES, min_nodes
from archdsl.graph.ir import AuxHead, Graph, Node, ShapeCheck
from archdsl.graph.passes.infer_shapes import node_shape
from archdsl.graph.shapes import Shape
from archdsl.lang import syntax as s
from archdsl.lang.kinds import coerce
from archdsl.lang.loader import Program
from archdsl.lang.numbers import MAX_DIM
from archdsl.lang.source import Span
from archdsl.lang.values import (
    Value,
    describe,
    did_you_mean,
    evaluate,
    unknown_name,
)


class _Skip(Exception):
    """An error was recorded; abandon this statement and carry on with the next."""


@dataclass
class _Scope:
    """A naming scope: `prefix` plus counters for automatic names."""

    prefix: str
    used: set[str] = field(default_factory=set)
    op_counts: dict[str, int] = field(default_factory=dict)
    number: int = 0

    def qualify(self, local: str) -> str:
        return f"{self.prefix}.{local}" if self.prefix else local

    def auto(self, base: str) -> str:
        count = self.op_counts.get(base, 0)
        local = base if count == 0 else f"{base}_{count}"
        while local in self.used:
            count += 1
            local = f"{base}_{count}"
        self.op_counts[base] = count + 1
        self.used.add(local)
        return local

    def next_number(self) -> str:
        while str(self.number) in self.used:
            self.number += 1
        local = str(self.number)
        self.number += 1
        self.used.add(local)
        return local

    def child(self, local: str) -> _Scope:
        return _Scope(self.qualify(local))


@dataclass
class _Ctx:
    """Where lowering is: scope, variable bindings, taps of this definition, modes."""

    scope: _Scope
    env: Mapping[str, Value]
    taps: dict[str, str]
    frozen: bool = False
    aux: str | None = None
    trace: tuple[Span, ...] = ()
    blocks: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    iterated: dict[str, tuple[Span, str]] = field(default_factory=dict)
    """Taps defined inside a `repeat` body: one per iteration, so `from NAME` is ambiguous."""

    def but(self, **changes: Any) -> _Ctx:
        return dataclasses.replace(self, **changes)


def lower(
    program: Program,
    network: str | None = None,
    arguments: Mapping[str, Value] | None = None,
) -> Graph:
    """Build the graph of one network of `program` (the main file's last by default).

    Raises:
        ArchError: every independent name and argument error, sorted.
    """
    return _Lowerer(program).network(network, dict(arguments or {}))


def select_network(program: Program, network: str | None) -> s.NetworkDef:
    """The network to build: named, or the last one in the main file."""
    if network is None:
        if not program.networks:
            raise ArchNameError(
                "this file defines no `network`",
                Span.point(program.main.source, 1, 1),
                help="add `network Name { input ... }`",
            )
        return program.networks[-1]
    found = program.definitions.get(network)
    if not isinstance(found, s.NetworkDef):
        names = [n for n, d in program.definitions.items() if isinstance(d, s.NetworkDef)]
        raise ArchNameError(
            f"no network `{network}` in {program.main.source.filename}",
            Span.point(program.main.source, 1, 1),
            help=did_you_mean(network, names) or f"networks here: {', '.join(names)}",
        )
    return found


class _Lowerer:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.graph = Graph()
        self.errors: list[ArchError] = []
        self.scope_outputs: dict[str, str] = {}
        self.shapes: dict[str, Shape] = {}
        """Shapes inferred during lowering, for `in.c`; the pipeline infers all again."""
        self.ops = BindMemo()
        self.names = ChainMap(ops.OPS, program.definitions)
        """Ops and blocks, for hints when a call has a second statement's words."""

    # entry ------------------------------------------------------------------------------
    def network(self, name: str | None, arguments: dict[str, Value]) -> Graph:
        definition = select_network(self.program, name)
        self.graph.name = definition.name.text
        self.graph.span = definition.span
        self._check_shadowing()
        env = bind_network_arguments(definition, arguments)
        ctx = _Ctx(scope=_Scope(""), env=env, taps={}, networks=(definition.name.text,))
        out = self._body(definition.body, None, ctx)
        self.graph.arguments = dict(env)
        if out is None and not self.errors:
            self.errors.append(
                ArchNameError(
                    f"network `{definition.name.text}` has no layers",
                    definition.name.span,
                    help="start its body with `input HxWxC`",
                )
            )
        raise_all(self.errors)
        assert out is not None
        self.graph.outputs = (out,)
        self._check_used(definition)
        return self.graph

    def _check_shadowing(self) -> None:
        """A block named like a layer would never be called: the layer wins. Refuse it."""
        for name, definition in self.program.definitions.items():
            op_class = ops.OPS.get(name)
            if isinstance(definition, s.BlockDef) and op_class is not None:
                what = "layer" if op_class.user_visible else "construct"
                self.errors.append(
                    ArchNameError(
                        f"block `{name}` has the name of a {what}: calls to `{name}` "
                        f"would build the {what}, never this block",
                        definition.name.span,
                        help=f"rename the block, e.g. `{name}_block`",
                    )
                )

    # statements -------------------------------------------------------------------------
    def _body(self, body: Sequence[s.Stmt], cur: str | None, ctx: _Ctx) -> str | None:
        self._reserve(body, ctx.scope)
        for stmt in body:
            try:
                if isinstance(stmt, s.Chain):
                    cur = self._chain(stmt, cur, ctx)
                elif isinstance(stmt, s.Aux):
                    self._aux(stmt, cur, ctx)
                elif isinstance(stmt, s.Use):
                    cur = self._use(stmt, cur, ctx)
            except _Skip:
                if isinstance(stmt, s.Use) and cur is None:
                    break  # the rest would only repeat that it has no input
                continue
            except ArchError as error:
                self._record(error, ctx)
                if isinstance(stmt, s.Use) and cur is None:
                    break
        return cur

    def _reserve(self, body: Sequence[s.Stmt], scope: _Scope) -> None:
        """Claim the `as` names of this scope first, so automatic names avoid them."""
        for stmt in body:
            if not isinstance(stmt, s.Chain):
                if isinstance(stmt, s.Aux):
                    scope.used.add(stmt.name.text)
                continue
            for step in stmt.steps:
                if step.alias is not None:
                    scope.used.add(step.alias.text)
                if isinstance(step, s.Residual | s.Group):
                    self._reserve(step.body, scope)

    def _record(self, error: ArchError, ctx: _Ctx) -> None:
        if not error.trace:
            error.trace = ctx.trace
        self.errors.append(error)

    def _fail_all(self, error: BindError, ctx: _Ctx) -> _Skip:
        for each in error.errors:
            self._record(each, ctx)
        return _Skip()

    def _bind_block(
        self,
        block: s.BlockDef | s.NetworkDef,
        call: s.Call | s.Use,
        ctx: _Ctx,
        cur: str | None = None,
    ) -> dict[str, Any]:
        # `in.c` in the block reads the shape of its input, inferred when first read
        shape = functools.partial(self._shape_of, cur, call.span) if cur is not None else None
        try:
            return bind_block_arguments(block, call, ctx.env, shape)
        except BindError as error:
            raise self._fail_all(error, ctx) from None

    def _fail(self, error: ArchError, ctx: _Ctx) -> _Skip:
        self._record(error, ctx)
        return _Skip()

    def _chain(self, chain: s.Chain, cur: str | None, ctx: _Ctx) -> str | None:
        if chain.frozen:
            ctx = ctx.but(frozen=True)
        if chain.source is not None:
            cur = self._tap(chain.source, ctx)
        for step in chain.steps:
            cur = self._step(step, cur, ctx)
        if chain.check is not None and cur is not None:
            expected = evaluate(chain.check, ctx.env)
            try:
                shape = coerce("shape", expected, "a `:` assertion")
            except ValueError:
                raise ArchValueError(
                    f"a `:` assertion needs a shape like `28x28x6`, got {describe(expected)}",
                    chain.check.span,
                ) from None
            assert isinstance(shape, tuple)
            self.graph.checks.append(ShapeCheck(cur, shape, chain.check.span))
        return cur

    def _tap(self, ident: s.Ident, ctx: _Ctx) -> str:
        found = ctx.taps.get(ident.text)
        if found is None:
            found = self.scope_outputs.get(ctx.scope.qualify(ident.text))
        if found is None and ctx.scope.qualify(ident.text) in self.graph:
            found = ctx.scope.qualify(ident.text)
        if found is None and ident.text in self.graph:
            found = ident.text
        if found is None and ident.text in ctx.iterated:
            raise self._fail(_iterated_tap(ident, *ctx.iterated[ident.text]), ctx)
        if found is None:
            raise self._fail(unknown_name(ident.text, ident.span, ctx.taps, "tap"), ctx)
        head = self.graph.node(found).aux
        if head is not None and head != ctx.aux:
            raise self._fail(
                ArchNameError(
                    f"`from {ident.text}`: `{found}` is inside aux head `{head}`, which "
                    "exists only in training; nothing outside the head can use it",
                    ident.span,
                    help="move the layer before the `aux` head and tap it there",
                ),
                ctx,
            )
        return found

    def _aux(self, aux: s.Aux, cur: str | None, ctx: _Ctx) -> None:
        weight = 0.3
        for kwarg in aux.kwargs:
            if kwarg.name.text != "weight":
                raise unknown_name(kwarg.name.text, kwarg.name.span, ["weight"], "`aux` option")
            value = evaluate(kwarg.value, ctx.env)
            try:
                weight = float(coerce("float", value, "`aux` weight"))  # type: ignore[arg-type]
            except ValueError as error:
                raise ArchValueError(str(error), kwarg.value.span) from None
            if weight < 0:
                raise ArchValueError(
                    f"an `aux` weight scales a loss and cannot be negative, got {describe(value)}",
                    kwarg.value.span,
                )
        if cur is None:
            raise ArchNameError("an `aux` head needs a layer before it", aux.span)
        key = ctx.scope.qualify(aux.name.text)
        if key in self.graph.aux or key == "output":
            raise ArchNameError(f"aux head `{key}` is defined twice", aux.name.span)
        scope = ctx.scope.child(aux.name.text)
        inner = ctx.but(scope=scope, aux=key)
        sole_block = self._sole_block(aux.body)
        if sole_block is not None:
            out = self._block(sole_block[1], sole_block[0], cur, inner, scope=scope)
        else:
            out = self._body(aux.body, cur, inner)
        if out is None or out == cur:
            raise ArchValueError(f"aux head `{key}` has no layers", aux.span)
        self.graph.aux[key] = AuxHead(out, weight, aux.span)

    # steps ------------------------------------------------------------------------------
    def _step(self, step: s.Step, cur: str | None, ctx: _Ctx) -> str | None:
        if isinstance(step, s.Call):
            return self._call(step, cur, ctx)
        if isinstance(step, s.Residual):
            return self._residual(step, cur, ctx)
        if isinstance(step, s.Merge):
            return self._merge(step, cur, ctx)
        if isinstance(step, s.Repeat):
            return self._repeat(step, cur, ctx)
        out = self._body(step.body, cur, ctx)
        return self._name_point(step.alias, out, ctx)

    def _name_point(self, alias: s.Ident | None, out: str | None, ctx: _Ctx) -> str | None:
        if alias is not None and out is not None:
            ctx.taps[alias.text] = out
        return out

    def _add(self, local: str, node: Node, ctx: _Ctx) -> str:
        name = ctx.scope.qualify(local)
        if name in self.graph:
            raise self._fail(ArchNameError(f"`{name}` names two layers", node.span), ctx)
        if len(self.graph) >= MAX_NODES:
            raise ArchValueError(
                f"the network expands past {MAX_NODES:,} layers",
                node.span,
                help="check the `repeat` counts",
            )
        for source in node.inputs:
            head = self.graph.node(source).aux
            if head is not None and head != node.aux and node.aux is None:
                raise self._fail(
                    ArchNameError(
                        f"`{source}` is inside aux head `{head}`; the main path cannot use it",
                        node.span,
                    ),
                    ctx,
                )
        self.graph.add(name, node)
        return name

    def _node(self, op: ops.Op, inputs: tuple[str, ...], span: Span, ctx: _Ctx) -> Node:
        return Node(
            op=op, inputs=inputs, span=span, frozen=ctx.frozen, aux=ctx.aux, trace=ctx.trace
        )

    def _call(self, call: s.Call, cur: str | None, ctx: _Ctx) -> str | None:
        name = call.op.text
        op_class = ops.OPS.get(name)
        if op_class is not None and op_class.user_visible:
            return self._layer(op_class, call, cur, ctx)
        definition = self.program.definitions.get(name)
        if isinstance(definition, s.BlockDef):
            return self._block(definition, call, cur, ctx)
        if isinstance(definition, s.NetworkDef):
            raise self._fail(
                ArchNameError(
                    f"`{name}` is a network, not a block",
                    call.op.span,
                    help=f"reuse its layers with `use {name}`",
                ),
                ctx,
            )
        if op_class is not None:
            raise self._fail(
                ArchNameError(
                    f"`{name}` is written as a construct, not a layer",
                    call.op.span,
                    help=f"write `{name} {{ branch {{ ... }} branch {{ ... }} }}`",
                ),
                ctx,
            )
        candidates = [n for n, c in ops.OPS.items() if c.user_visible]
        candidates += [n for n, d in self.program.definitions.items() if isinstance(d, s.BlockDef)]
        raise self._fail(unknown_name(name, call.op.span, candidates, "layer or block"), ctx)

    def _layer(
        self, op_class: type[ops.Op], call: s.Call, cur: str | None, ctx: _Ctx
    ) -> str | None:
        try:
            op = self.ops.bind(op_class, call, ctx.env, self.names)
        except BindError as error:
            raise self._fail_all(error, ctx) from None
        if isinstance(op, ops.Input):
            if ctx.blocks:
                raise self._fail(
                    ArchNameError("`input` belongs in a network, not a block", call.span),
                    ctx,
                )
            if self.graph.inputs:
                raise self._fail(
                    ArchNameError(
                        "a network has one `input`; this is a second",
                        call.span,
                        help="start other paths with `from NAME`",
                    ),
                    ctx,
                )
            inputs: tuple[str, ...] = ()
        else:
            if cur is None:
                raise self._fail(
                    ArchNameError(
                        f"`{call.op.text}` has no input: the network must start with `input`",
                        call.span,
                        help="add `input HxWxC` before it",
                    ),
                    ctx,
                )
            inputs = (cur,)
        local = call.alias.text if call.alias is not None else ctx.scope.auto(op_class.name)
        out = self._add(local, self._node(op, inputs, call.span, ctx), ctx)
        return self._name_point(call.alias, out, ctx)

    def _block(
        self,
        block: s.BlockDef,
        call: s.Call,
        cur: str | None,
        ctx: _Ctx,
        scope: _Scope | None = None,
    ) -> str | None:
        name = block.name.text
        if name in ctx.blocks:
            chain = " -> ".join([*ctx.blocks[ctx.blocks.index(name) :], name])
            raise self._fail(
                ArchNameError(f"block `{name}` calls itself: {chain}", call.op.span), ctx
            )
        if len(ctx.blocks) >= MAX_BLOCK_DEPTH:
            raise self._fail(
                ArchValueError(f"blocks nest deeper than {MAX_BLOCK_DEPTH}", call.span), ctx
            )
        if cur is None:
            raise self._fail(
                ArchNameError(
                    f"block `{name}` has no input: the network must start with `input`",
                    call.span,
                ),
                ctx,
            )
        env = self._bind_block(block, call, ctx, cur)
        if scope is None:
            local = call.alias.text if call.alias is not None else ctx.scope.next_number()
            scope = ctx.scope.child(local)
        inner = ctx.but(
            scope=scope,
            env=env,
            taps={},
            iterated={},
            trace=(call.span, *ctx.trace),
            blocks=(*ctx.blocks, name),
        )
        out = self._body(block.body, cur, inner)
        if out is not None:
            self.scope_outputs[scope.prefix] = out
        return self._name_point(call.alias, out, ctx)

    def _shape_of(self, name: str, at: Span) -> Shape:
        """The shape of a node built so far, inferred on demand (for `in.c`) and kept.

        Shapes on the main path do not depend on inserted projections (a residual has its
        body's shape), so what is inferred here is what `infer_shapes` will find.
        """
        stack = [name]
        while stack:
            top = stack[-1]
            if top in self.shapes:
                stack.pop()
                continue
            node = self.graph.node(top)
            pending = [i for i in node.inputs if i not in self.shapes]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            self.shapes[top] = node_shape(top, node, [self.shapes[i] for i in node.inputs])
        return self.shapes[name]

    def _residual(self, step: s.Residual, cur: str | None, ctx: _Ctx) -> str | None:
        mode = "auto"
        for kwarg in step.kwargs:
            if kwarg.name.text != "shortcut":
                raise self._fail(
                    unknown_name(
                        kwarg.name.text, kwarg.name.span, ["shortcut"], "`residual` option"
                    ),
                    ctx,
                )
            value = evaluate(kwarg.value, ctx.env)
            try:
                mode = str(coerce("enum:" + "|".join(ops.SHORTCUTS), value, "`residual` shortcut"))
            except ValueError as error:
                raise self._fail(ArchValueError(str(error), kwarg.value.span), ctx) from None
        if cur is None:
            raise self._fail(ArchNameError("`residual` has no input", step.span), ctx)
        body_out = self._body(step.body, cur, ctx)
        if body_out is None or body_out == cur:
            raise self._fail(ArchValueError("`residual` has an empty body", step.span), ctx)
        local = step.alias.text if step.alias is not None else ctx.scope.auto("residual")
        node = self._node(ops.Residual(shortcut=mode), (body_out, cur), step.span, ctx)
        out = self._add(local, node, ctx)
        return self._name_point(step.alias, out, ctx)

    def _merge(self, step: s.Merge, cur: str | None, ctx: _Ctx) -> str | None:
        op_class = ops.OPS.get(step.kind)
        if op_class is None or not issubclass(op_class, ops.Merge):
            raise self._fail(self._not_a_merge(step, op_class), ctx)
        if cur is None:
            raise self._fail(ArchNameError(f"`{step.kind}` has no input", step.span), ctx)
        if len(step.branches) < 2:
            raise self._fail(
                ArchValueError(
                    f"`{step.kind}` needs at least two branches, got {len(step.branches)}",
                    step.span,
                ),
                ctx,
            )
        local = step.alias.text if step.alias is not None else ctx.scope.auto(step.kind)
        merge_scope = ctx.scope.child(local)
        outs: list[str] = []
        for index, branch in enumerate(step.branches, start=1):
            branch_name = branch.alias.text if branch.alias else f"branch{index}"
            if branch_name in merge_scope.used:
                raise self._fail(
                    ArchNameError(f"two branches are named `{branch_name}`", branch.span),
                    ctx,
                )
            merge_scope.used.add(branch_name)
            out = self._body(branch.body, cur, ctx.but(scope=merge_scope.child(branch_name)))
            if out is None:
                raise _Skip()
            outs.append(out)
        op = op_class()
        out = self._add(local, self._node(op, tuple(outs), step.span, ctx), ctx)
        return self._name_point(step.alias, out, ctx)

    def _not_a_merge(self, step: s.Merge, op_class: type[ops.Op] | None) -> ArchError:
        """`relu { branch ... }`: only a merge (an op that joins branches) takes branches."""
        merges = [n for n, c in ops.OPS.items() if issubclass(c, ops.Merge)]
        definition = self.program.definitions.get(step.kind)
        what = "an unknown name"
        if op_class is not None:
            what = "a layer"
        elif definition is not None:
            what = "a block" if isinstance(definition, s.BlockDef) else "a network"
        return ArchNameError(
            f"`{step.kind}` is {what}, not a merge: only a merge takes branches",
            step.span,
            help=did_you_mean(step.kind, merges) or f"the merges are {', '.join(merges)}",
        )

    def _repeat(self, step: s.Repeat, cur: str | None, ctx: _Ctx) -> str | None:
        count = evaluate(step.count, ctx.env)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise self._fail(
                ArchValueError(
                    f"`repeat` needs a whole number of times, got {describe(count)}",
                    step.count.span,
                ),
                ctx,
            )
        if count > MAX_DIM:
            raise self._fail(ArchValueError(f"`repeat {count}` is too many", step.span), ctx)
        parent = ctx.scope.child(step.alias.text) if step.alias is not None else ctx.scope
        sole_block = self._sole_block(step.body)
        at_least = count * min_nodes(step.body, ctx.env, self.program)
        if len(self.graph) + at_least > MAX_NODES:
            self._check_expansion(step, count, at_least // max(count, 1), ctx)
        before = len(self.graph)
        for iteration in range(count):
            if iteration == 1:
                self._check_expansion(step, count, len(self.graph) - before, ctx)
            scope = parent.child(parent.next_number())
            size, start = len(self.graph), cur
            if sole_block is not None:
                call, block = sole_block
                cur = self._block(block, call, cur, ctx, scope=scope)
            else:
                taps = dict(ctx.taps)
                cur = self._body(step.body, cur, ctx.but(scope=scope, taps=taps))
                if cur is not None:
                    self.scope_outputs[scope.prefix] = cur
                for tap, node in taps.items():
                    if ctx.taps.get(tap) != node:
                        ctx.iterated[tap] = (step.span, _iteration_tap(step, node, ctx.scope))
            if len(self.errors) > 50:
                break
            if len(self.graph) == size and cur == start:
                break  # an empty body: every further iteration is the same no-op
        if step.alias is not None and cur is not None:
            self.scope_outputs[parent.prefix] = cur
        return self._name_point(step.alias, cur, ctx)

    def _check_expansion(self, step: s.Repeat, count: int, per_iteration: int, ctx: _Ctx) -> None:
        """Refuse a `repeat` whose expansion would pass `MAX_NODES`, before building it."""
        if len(self.graph) + (count - 1) * per_iteration > MAX_NODES:
            raise self._fail(
                ArchValueError(
                    f"`repeat {count:,}` of {per_iteration:,} layers would expand the network "
                    f"past {MAX_NODES:,} layers",
                    step.span,
                    help="check the `repeat` counts",
                ),
                ctx,
            )

    def _sole_block(self, body: Sequence[s.Stmt]) -> tuple[s.Call, s.BlockDef] | None:
        if len(body) != 1 or not isinstance(body[0], s.Chain):
            return None
        chain = body[0]
        if chain.source or chain.check or chain.frozen or len(chain.steps) != 1:
            return None
        call = chain.steps[0]
        if not isinstance(call, s.Call) or call.alias is not None:
            return None
        block = self.program.definitions.get(call.op.text)
        return (call, block) if isinstance(block, s.BlockDef) else None

    # reuse ------------------------------------------------------------------------------
    def _use(self, use: s.Use, cur: str | None, ctx: _Ctx) -> str | None:
        base = self.program.definitions.get(use.network.text)
        if not isinstance(base, s.NetworkDef):
            names = [n for n, d in self.program.definitions.items() if isinstance(d, s.NetworkDef)]
            raise self._fail(
                unknown_name(use.network.text, use.network.span, names, "network"), ctx
            )
        if cur is not None or ctx.blocks:
            raise self._fail(
                ArchNameError(
                    "`use` must come first in a network: it brings the base's input",
                    use.span,
                ),
                ctx,
            )
        name = base.name.text
        if name in ctx.networks:
            chain = " -> ".join([*ctx.networks[ctx.networks.index(name) :], name])
            raise self._fail(
                ArchNameError(f"network `{name}` uses itself: {chain}", use.network.span), ctx
            )
        if len(ctx.networks) > MAX_BLOCK_DEPTH:
            raise self._fail(
                ArchValueError(f"`use` nests deeper than {MAX_BLOCK_DEPTH} networks", use.span),
                ctx,
            )
        env = self._bind_block(base, use, ctx)
        try:
            check_use_ranges(base, use, env)
        except ArchError as error:
            raise self._fail(error, ctx) from None
        taps: dict[str, str] = {}
        iterated: dict[str, tuple[Span, str]] = {}
        inner = ctx.but(
            env=env,
            taps=taps,
            iterated=iterated,
            trace=(use.span, *ctx.trace),
            networks=(*ctx.networks, name),
        )
        out = self._body(base.body, None, inner)
        if out is None:
            raise _Skip()
        if use.upto is not None:
            out = self._resolve_point(use.upto, taps, ctx, iterated)
            head = self.graph.node(out).aux
            if head is not None:
                raise self._fail(
                    ArchNameError(
                        f"`upto {use.upto.text}`: `{out}` is inside aux head `{head}`, "
                        "not on the main path",
                        use.upto.span,
                        help="cut at a layer of the main path",
                    ),
                    ctx,
                )
            keep = self.graph.ancestors(out) | {out}
            for name in [n for n in self.graph.order() if n not in keep]:
                self.graph.remove(name)
            self.graph.aux = {k: h for k, h in self.graph.aux.items() if h.output in keep}
            self.graph.checks = [c for c in self.graph.checks if c.node in keep]
        if use.frozen:
            frozen = set(self.graph.order())
            if use.frozen_upto is not None:
                point = self._resolve_point(use.frozen_upto, taps, ctx, iterated)
                if point not in self.graph:
                    raise self._fail(
                        ArchNameError(
                            f"`frozen upto {use.frozen_upto.text}`: `{point}` is not kept by "
                            f"`upto {use.upto.text if use.upto else ''}`, which keeps only "
                            "its layer and what that depends on",
                            use.frozen_upto.span,
                            help="freeze up to a layer at or before the `upto` layer",
                        ),
                        ctx,
                    )
                frozen = self.graph.ancestors(point) | {point}
            for name in frozen:
                node = self.graph.node(name)
                self.graph.replace(name, dataclasses.replace(node, frozen=True))
        ctx.taps.update({k: v for k, v in taps.items() if v in self.graph})
        return out

    def _resolve_point(
        self,
        ident: s.Ident,
        taps: Mapping[str, str],
        ctx: _Ctx,
        iterated: Mapping[str, tuple[Span, str]],
    ) -> str:
        text = ident.text
        found = taps.get(text) or self.scope_outputs.get(text)
        if found is None and text in self.graph:
            found = text
        if found is None and text in iterated:
            raise self._fail(_iterated_tap(ident, *iterated[text]), ctx)
        if found is None:
            names = [*taps, *self.scope_outputs]
            raise self._fail(unknown_name(text, ident.span, names, "layer"), ctx)
        return found

    # checks -----------------------------------------------------------------------------
    def _check_used(self, definition: s.NetworkDef) -> None:
        # A node no layer reads is used only if it is an end (an ancestor of an end has
        # a reader), so no search from the ends is needed.
        ends = {*self.graph.outputs, *(h.output for h in self.graph.aux.values())}
        unread = self.graph.unused() - ends
        errors: list[ArchError] = []
        for name, node in self.graph.items() if unread else ():
            if name in unread:
                errors.append(
                    ArchNameError(
                        f"the output of `{name}` is never used",
                        node.span,
                        help="feed it into a later layer with `from`, or remove it",
                        trace=node.trace,
                    )
                )
        raise_all(errors)


def _iteration_tap(step: s.Repeat, node: str, scope: _Scope) -> str:
    """How to tap the last iteration's `node` by its full name, from the repeat's scope."""
    local = node[len(scope.prefix) + 1 :] if scope.prefix else node
    if step.alias is not None:
        return f"tap one iteration by its full name, e.g. `from {local}` for the last one"
    return (
        f"name the repeat (`repeat ... as r {{ ... }}`) and tap one iteration by its "
        f"full name, e.g. `from r.{local}` for the last one"
    )


def _iterated_tap(ident: s.Ident, repeat: Span, help_: str) -> ArchNameError:
    """`from f` after a `repeat` whose body defines `f`: one per iteration, none chosen."""
    return ArchNameError(
        f"`{ident.text}` is defined inside the `repeat` on line {repeat.line}, once per "
        "iteration, so `from` cannot tell which one",
        ident.span,
        notes=[f"the `repeat` is at {repeat}"],
        help=help_,
    )
