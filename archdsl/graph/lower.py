"""`syntax` to `ir.Graph`: instantiate blocks, bind arguments to ops, name every node.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archdsl.errors import ArchError, ArchNameError, ArchValueError, raise_all
from archdsl.graph import ops
from archdsl.graph.ir import AuxHead, Graph, Node, ShapeCheck
from archdsl.lang import syntax as s
from archdsl.lang.loader import Program
from archdsl.lang.source import Span
from archdsl.lang.values import (
    MAX_DIM,
    Value,
    Word,
    coerce,
    describe,
    did_you_mean,
    evaluate,
    unknown_name,
)

MAX_NODES = 500_000
"""A spec that expands past this many layers is refused before anything is built."""
MAX_BLOCK_DEPTH = 64


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

    # entry ------------------------------------------------------------------------------
    def network(self, name: str | None, arguments: dict[str, Value]) -> Graph:
        definition = select_network(self.program, name)
        self.graph.name = definition.name.text
        self.graph.span = definition.span
        self._check_shadowing()
        env = self._bind_network_arguments(definition, arguments)
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

    def _bind_network_arguments(
        self, definition: s.NetworkDef, arguments: dict[str, Value]
    ) -> dict[str, Value]:
        known = {p.name.text for p in definition.params}
        for key in arguments:
            if key not in known:
                raise ArchNameError(
                    f"network `{definition.name.text}` has no parameter `{key}`",
                    definition.name.span,
                    help=did_you_mean(key, known)
                    or f"its parameters: {', '.join(sorted(known)) or 'none'}",
                )
        env: dict[str, Value] = {}
        for param in definition.params:
            key = param.name.text
            if key in arguments:
                env[key] = arguments[key]
                self._check_range(definition, param, env)
            elif param.default is not None:
                env[key] = evaluate(param.default, env)
                self._check_range(definition, param, env, default=True)
            else:
                raise ArchValueError(
                    f"network `{definition.name.text}` needs a value for `{key}`",
                    param.span,
                    help=f"give it a default (`{key} = ...`) or pass `--arg {key}=...`",
                )
        return env

    def _check_range(
        self,
        definition: s.NetworkDef,
        param: s.Param,
        env: dict[str, Value],
        *,
        default: bool = False,
        at: Span | None = None,
    ) -> None:
        if param.low is None or param.high is None:
            return
        value = env[param.name.text]
        low, high = evaluate(param.low, env), evaluate(param.high, env)
        for bound, expr in ((low, param.low), (high, param.high)):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ArchValueError(f"a range is two numbers, got {describe(bound)}", expr.span)
        assert isinstance(low, int | float) and isinstance(high, int | float)
        if low > high:
            raise ArchValueError(
                f"the range {describe(low)}..{describe(high)} of `{param.name.text}` is empty",
                param.span,
            )
        inside = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and (low <= value <= high)
        )
        if not inside:
            what = "its default is" if default else "got"
            raise ArchValueError(
                f"network `{definition.name.text}` takes `{param.name.text}` in "
                f"{describe(low)}..{describe(high)}, {what} {describe(value)}",
                at or param.span,
                notes=[f"the range is declared at {param.span}"] if at else (),
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
        op = self._bind_op(op_class, call, ctx)
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

    def _bind_op(self, op_class: type[ops.Op], call: s.Call, ctx: _Ctx) -> ops.Op:
        fields = _fields_of(op_class)
        given: dict[str, tuple[Value, s.Syntax]] = {}
        positional = list(op_class.positional)
        errors: list[ArchError] = []
        spelling = op_class.name

        def put(key: str, value: Value, where: s.Syntax) -> None:
            if key in given:
                errors.append(ArchValueError(f"`{spelling}` got `{key}` twice", where.span))
            given[key] = (value, where)

        args = list(call.args)
        index = 0
        while index < len(args):
            arg = args[index]
            index += 1
            if isinstance(arg, s.Name) and arg.id in op_class.keywords:
                if index >= len(args):
                    errors.append(
                        ArchValueError(
                            f"`{arg.id}` needs a value after it",
                            arg.span,
                            help=f"write `{arg.id} 2`, or `{arg.id} = 2`",
                        )
                    )
                    break
                put(arg.id, evaluate(args[index], ctx.env), args[index])
                index += 1
                continue
            value = evaluate(arg, ctx.env)
            if isinstance(value, str) and value in op_class.flags:
                key, flag_value = op_class.flags[value]
                put(key, flag_value, arg)
                continue
            if not positional:
                taken = ", ".join(f"`{p}`" for p in op_class.positional) or "none"
                help_ = None
                if isinstance(value, Word):
                    help_ = did_you_mean(value, [*fields, *op_class.flags, *ctx.env])
                if isinstance(value, Word) and (
                    value in ops.OPS or value in self.program.definitions
                ):
                    help_ = f"one statement per line, or chain them: `... -> {value} ...`"
                glued = _glued_size_name(args[index - 2] if index >= 2 else None, arg, ctx.env)
                if glued is not None:
                    help_ = glued
                errors.append(
                    ArchValueError(
                        f"`{spelling}` takes no more positional arguments "
                        f"(it takes {taken}); got {describe(value)}",
                        arg.span,
                        help=help_ or _usage(op_class),
                    )
                )
                break
            put(positional.pop(0), value, arg)
        for kwarg in call.kwargs:
            key = kwarg.name.text
            if key not in fields:
                error = unknown_name(key, kwarg.name.span, fields, f"`{spelling}` argument")
                if isinstance(kwarg.value, s.Name) and kwarg.value.id in ops.OPS:
                    error.help = (
                        f"a layer follows with `->`: write `{spelling} ... -> {kwarg.value.id}`"
                    )
                errors.append(error)
                continue
            put(key, evaluate(kwarg.value, ctx.env), kwarg.value)
        attrs: dict[str, object] = {}
        for key, (value, where) in given.items():
            try:
                attrs[key] = coerce(fields[key].metadata["kind"], value, f"`{spelling}` {key}")
            except ValueError as error:
                help_ = None
                if isinstance(value, Word):
                    help_ = did_you_mean(value, ctx.env)
                errors.append(ArchValueError(str(error), where.span, help=help_))
        missing = [
            key
            for key, f in fields.items()
            if f.default is dataclasses.MISSING and key not in given
        ]
        if missing and not errors:
            errors.append(
                ArchValueError(
                    f"`{spelling}` needs {', '.join(f'`{m}`' for m in missing)}",
                    call.span,
                    help=_usage(op_class),
                )
            )
        if errors:
            for error in errors:
                self._record(error, ctx)
            raise _Skip()
        try:
            return op_class(**attrs)
        except ops.AttributeRuleError as error:
            raise self._fail(ArchValueError(str(error), call.span), ctx) from None

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
        env = self._bind_block_arguments(block, call, ctx)
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

    def _bind_block_arguments(
        self, block: s.BlockDef | s.NetworkDef, call: s.Call | s.Use, ctx: _Ctx
    ) -> dict[str, Value]:
        params = [p.name.text for p in block.params]
        kind = "block" if isinstance(block, s.BlockDef) else "network"
        name = block.name.text
        bound: dict[str, Value] = {}
        errors: list[ArchError] = []
        for index, arg in enumerate(call.args):
            if index >= len(params):
                errors.append(
                    ArchValueError(
                        f"{kind} `{name}` takes {len(params)} arguments, got {len(call.args)}",
                        arg.span,
                        help=f"its parameters: {', '.join(params) or 'none'}",
                    )
                )
                break
            bound[params[index]] = evaluate(arg, ctx.env)
        for kwarg in call.kwargs:
            key = kwarg.name.text
            if key not in params:
                errors.append(
                    unknown_name(key, kwarg.name.span, params, f"argument of {kind} `{name}`:")
                )
                continue
            if key in bound:
                errors.append(ArchValueError(f"`{key}` is given twice", kwarg.span))
            bound[key] = evaluate(kwarg.value, ctx.env)
        env: dict[str, Value] = {}
        for param in block.params:
            key = param.name.text
            if key in bound:
                env[key] = bound[key]
            elif param.default is not None:
                env[key] = evaluate(param.default, env)
            elif not errors:
                errors.append(
                    ArchValueError(
                        f"{kind} `{name}` needs `{key}`",
                        call.span,
                        notes=[f"`{name}` is defined at {block.name.span}"],
                    )
                )
        if errors:
            for error in errors:
                self._record(error, ctx)
            raise _Skip()
        return env

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
        op: ops.Op = ops.Concat() if step.kind == "concat" else ops.Add()
        out = self._add(local, self._node(op, tuple(outs), step.span, ctx), ctx)
        return self._name_point(step.alias, out, ctx)

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
        at_least = count * _min_nodes(step.body, ctx.env, self.program)
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
        env = self._bind_block_arguments(base, use, ctx)
        self._check_use_ranges(base, use, env, ctx)
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

    def _check_use_ranges(
        self, base: s.NetworkDef, use: s.Use, env: dict[str, Value], ctx: _Ctx
    ) -> None:
        """`use Base(c = 99)` must respect the ranges Base declares, as `--arg` does."""
        given = {kwarg.name.text: kwarg.value.span for kwarg in use.kwargs}
        given.update({p.name.text: a.span for p, a in zip(base.params, use.args, strict=False)})
        for param in base.params:
            try:
                self._check_range(
                    base,
                    param,
                    env,
                    default=param.name.text not in given,
                    at=given.get(param.name.text),
                )
            except ArchError as error:
                raise self._fail(error, ctx) from None

    # checks -----------------------------------------------------------------------------
    def _check_used(self, definition: s.NetworkDef) -> None:
        ends = [*self.graph.outputs, *(h.output for h in self.graph.aux.values())]
        used: set[str] = set(ends)
        for end in ends:
            used |= self.graph.ancestors(end)
        errors: list[ArchError] = []
        for name, node in self.graph.items():
            if name not in used and not self.graph.users(name):
                errors.append(
                    ArchNameError(
                        f"the output of `{name}` is never used",
                        node.span,
                        help="feed it into a later layer with `from`, or remove it",
                        trace=node.trace,
                    )
                )
        raise_all(errors)


def _glued_size_name(before: s.Expr | None, arg: s.Expr, env: Mapping[str, Value]) -> str | None:
    """`8x8xclasses`: a size glued to a name reads as `8x8` then the word `xclasses`."""
    if not isinstance(arg, s.Name) or not arg.id.startswith("x") or len(arg.id) < 2:
        return None
    if not isinstance(before, s.Size | s.Int):
        return None
    if (before.span.end_line, before.span.end_column) != (arg.span.line, arg.span.column):
        return None
    name = arg.id[1:]
    known = "" if name in env else f" (`{name}` is not a parameter here)"
    return (
        f"`{arg.id}` reads as one name{known}; to multiply by `{name}`, put spaces "
        f"around `x`: `{_source_text(before.span)} x {name}`"
    )


def _source_text(span: Span) -> str:
    return span.source.line(span.line)[span.column - 1 : span.end_column - 1]


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


def _min_nodes(
    body: Sequence[s.Stmt],
    env: Mapping[str, Value] | None,
    program: Program,
    depth: int = 0,
    memo: dict[str, int] | None = None,
) -> int:
    """A lower bound on the nodes `body` makes, computed without building anything.

    Counts layers, and multiplies by `repeat` counts that are literals or known in `env`
    (inside a called block the arguments are unknown, so only literals count). Being a
    lower bound, a refusal based on it is never wrong. `memo` holds each block's count,
    so a block called twice in its own body costs one walk, not 2^depth.
    """
    if depth > MAX_BLOCK_DEPTH:
        return 0
    memo = {} if memo is None else memo
    total = 0
    for stmt in body:
        if isinstance(stmt, s.Aux):
            total += _min_nodes(stmt.body, env, program, depth + 1, memo)
        if not isinstance(stmt, s.Chain):
            continue
        for step in stmt.steps:
            total += _min_step_nodes(step, env, program, depth, memo)
            if total > MAX_NODES:
                return total
    return total


def _min_step_nodes(
    step: s.Step,
    env: Mapping[str, Value] | None,
    program: Program,
    depth: int,
    memo: dict[str, int],
) -> int:
    if isinstance(step, s.Call):
        block = program.definitions.get(step.op.text)
        if not isinstance(block, s.BlockDef):
            return 1
        name = block.name.text
        if name not in memo:
            memo[name] = 0  # a block that calls itself counts nothing for that call
            memo[name] = _min_nodes(block.body, None, program, depth + 1, memo)
        return memo[name]
    if isinstance(step, s.Repeat):
        try:
            count = (
                evaluate(step.count, env) if env is not None or isinstance(step.count, s.Int) else 0
            )
        except ArchError:
            count = 0
        if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
            return 0
        return count * _min_nodes(step.body, env, program, depth + 1, memo)
    if isinstance(step, s.Merge):
        return 1 + sum(_min_nodes(b.body, env, program, depth + 1, memo) for b in step.branches)
    extra = 1 if isinstance(step, s.Residual) else 0
    return extra + _min_nodes(step.body, env, program, depth + 1, memo)


@functools.cache
def _fields_of(op_class: type[ops.Op]) -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(op_class)}


def _usage(op_class: type[ops.Op]) -> str:
    parts = [op_class.name, *(f"<{p}>" for p in op_class.positional)]
    extras = [f"{k} <value>" for k in op_class.keywords]
    extras += [f for f in op_class.flags]
    return "usage: `" + " ".join(parts) + (" [" + "] [".join(extras) + "]" if extras else "") + "`"
