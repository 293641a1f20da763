"""The canonical layout of `.arch` text: `format_text` (comments kept) and `unparse` (AST to text).

The layout is a function of the syntax tree, the comments, and where the source had
blank lines (kept, collapsed to one), as gofmt and black do:

- four-space indentation; one statement per line; `a -> b` with spaces; `x = 1`;
- layers in the space form (`conv 64 3x3 stride 2`), blocks in the call form
  (`basic(64, stride = 2)`), positional arguments before keyword arguments;
- a chain longer than `WIDTH` breaks after `->`, continuation lines indented once more;
- a `branch`, `repeat`, `{ }` group or `aux` body of one short chain of layers stays
  on one line (`branch { conv 64 1x1 -> relu }`); `residual`, `concat`, `add`,
  `block` and `network` bodies always open a new line;
- the `: shape` assertions, and the trailing comments, of consecutive lines are aligned;
- one blank line between top-level definitions, none after `{` or before `}`.

Comments stay on their line when they were alone there, or at the end of the line of
the construct they followed. A construct that the formatter joins onto one line (a
chain written over several lines) and that held several comments keeps them, in
order, on their own lines just above it.

Properties (tested): `parse(format_text(t)) == parse(t)` and
`format_text(format_text(t)) == format_text(t)`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from archdsl.graph import ops
from archdsl.lang import syntax as s
from archdsl.lang.parser import parse

WIDTH = 100
"""A chain longer than this is broken after `->`."""
INDENT = "    "
INLINE_WIDTH = 60
"""A one-chain body shorter than this stays on its construct's line."""

_DIMS, _SUM, _PRODUCT, _UNARY, _ATOM = range(5)
_BINOP_LEVEL = {"+": _SUM, "-": _SUM, "*": _PRODUCT, "/": _PRODUCT, "//": _PRODUCT, "%": _PRODUCT}


def format_text(text: str, filename: str = "<string>") -> str:
    """The canonical layout of a spec's text, its comments kept.

    Raises:
        ArchSyntaxError: the text does not parse (nothing is formatted then).
    """
    spec = parse(text, filename)
    return _Printer(_Layout(text)).spec(spec)


def unparse(spec: s.Spec) -> str:
    """Spec text for a syntax tree, in the canonical layout (`parse(unparse(t)) == t`).

    The tree's spans are ignored, so trees built by hand (or by
    `archdsl.testing`) print as well as parsed ones.
    """
    return _Printer(None).spec(spec)


def format_expr(expr: s.Expr) -> str:
    """An expression as spec text, with the parentheses its tree needs and no more."""
    return _expr(expr, _DIMS)


# Expressions ------------------------------------------------------------------------------


def _float(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return "1e999"  # the only way a literal reaches infinity; NaN cannot be written
    text = repr(value)
    return text


def _expr(expr: s.Expr, need: int) -> str:
    """`expr` as text that parses back to it where an expression of level `need` goes."""
    level, text = _ATOM, ""
    if isinstance(expr, s.Int):
        text = str(expr.value)
    elif isinstance(expr, s.Float):
        text = _float(expr.value)
    elif isinstance(expr, s.Size):
        text = "x".join(str(v) for v in expr.value)
    elif isinstance(expr, s.Str):
        text = f'"{expr.value}"'
    elif isinstance(expr, s.Name):
        text = expr.id
    elif isinstance(expr, s.Neg):
        level = _UNARY
        text = "-" + _expr(expr.operand, _UNARY)
        if text.startswith("--"):
            text = "-(" + text[1:] + ")"
    elif isinstance(expr, s.BinOp):
        level = _BINOP_LEVEL[expr.op]
        text = f"{_expr(expr.left, level)} {expr.op} {_expr(expr.right, level + 1)}"
    elif isinstance(expr, s.Dims):
        level = _DIMS
        text = " x ".join(_expr(part, _SUM) for part in expr.parts)
    elif isinstance(expr, s.InputDim):
        text = f"in.{expr.dim.text}"
    elif isinstance(expr, s.Func):
        text = f"{expr.name.text}({', '.join(_expr(a, _DIMS) for a in expr.args)})"
    else:  # pragma: no cover - the Expr union is closed
        raise TypeError(f"not an expression: {expr!r}")
    return f"({text})" if level < need else text


def _kwarg(kwarg: s.Kwarg) -> str:
    return f"{kwarg.name.text} = {_expr(kwarg.value, _DIMS)}"


def _is_layer(name: str) -> bool:
    op = ops.OPS.get(name)
    return op is not None and op.user_visible


def _call(call: s.Call) -> str:
    if _is_layer(call.op.text):
        parts = [call.op.text]
        for index, arg in enumerate(call.args):
            text = _expr(arg, _DIMS)
            # `conv a -1` reads as `conv (a - 1)`: a later argument may not start with `-`
            if index and text.startswith("-"):
                text = f"({text})"
            parts.append(text)
        parts.extend(_kwarg(k) for k in call.kwargs)
        text = " ".join(parts)
    else:
        inner = [_expr(a, _DIMS) for a in call.args] + [_kwarg(k) for k in call.kwargs]
        text = f"{call.op.text}({', '.join(inner)})"
    return text + _alias(call.alias)


def _alias(alias: s.Ident | None) -> str:
    return f" as {alias.text}" if alias is not None else ""


def _param(param: s.Param) -> str:
    text = param.name.text
    if param.default is not None:
        text += f" = {_expr(param.default, _DIMS)}"
    if param.low is not None and param.high is not None:
        text += f" in {_expr(param.low, _DIMS)}..{_expr(param.high, _DIMS)}"
    return text


# Source layout: comments, braces, blank lines -----------------------------------------------

Pos = tuple[int, int]
"""(line, column), 1-based, columns in characters as Lark counts them."""


@dataclass(frozen=True)
class _Comment:
    line: int
    column: int
    text: str
    alone: bool
    """Nothing but whitespace before it on its line."""


class _Layout:
    """What the syntax tree forgets: comments, brace positions, blank lines."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.comments: list[_Comment] = []
        opens: list[Pos] = []
        self.closing: dict[Pos, Pos] = {}
        stack: list[Pos] = []
        for number, line in enumerate(self.lines, start=1):
            in_string = False
            for index, char in enumerate(line):
                if in_string:
                    in_string = char != '"'
                elif char == '"':
                    in_string = True
                elif char == "#":
                    self.comments.append(
                        _Comment(number, index + 1, line[index:].rstrip(), not line[:index].strip())
                    )
                    break
                elif char == "{":
                    opens.append((number, index + 1))
                    stack.append((number, index + 1))
                elif char == "}" and stack:
                    self.closing[stack.pop()] = (number, index + 1)
        self.opens = opens
        self._comment_pos = [(c.line, c.column) for c in self.comments]

    def open_brace(self, line: int, column: int) -> Pos:
        """The first `{` at or after a position (the body of the construct there)."""
        index = bisect.bisect_left(self.opens, (line, column))
        return self.opens[index]

    def has_comment(self, start: Pos, end: Pos) -> bool:
        """Whether a comment lies between two positions."""
        index = bisect.bisect_left(self._comment_pos, start)
        return index < len(self._comment_pos) and self._comment_pos[index] < end

    def blank_before(self, line: int) -> bool:
        """Whether the source line above `line` is blank."""
        return line >= 2 and not self.lines[line - 2].strip()


# Printing ---------------------------------------------------------------------------------


@dataclass
class _Unit:
    """One construct's line: a header (`... {`), a statement, or a closing `} ...`."""

    indent: int
    pieces: list[str]
    """Joined with ` -> `; a long unit breaks between pieces."""
    first: int = 0
    last: int = 0
    """Source lines it covers (0 without source): comments there belong to it."""
    check: str | None = None
    blank: bool = False
    closing: bool = False
    item: str | None = None
    """For a top-level definition: `import`, `block` or `network`."""
    comments: list[_Comment] = field(default_factory=list)

    @property
    def opens(self) -> bool:
        return self.pieces[-1].endswith("{")


@dataclass
class _Out:
    """An output line: blank, comment, or code (possibly wrapped) with check and comment."""

    indent: int = 0
    lines: tuple[str, ...] = ()
    check: str | None = None
    comment: str | None = None
    blank: bool = False
    opens: bool = False
    """Code that opens a body: no blank line follows it."""


class _Printer:
    def __init__(self, layout: _Layout | None) -> None:
        self.layout = layout

    # positions (all zero without source)
    def _line(self, node: s.Syntax) -> int:
        return node.span.line if self.layout else 0

    def _end(self, node: s.Syntax) -> int:
        return node.span.end_line if self.layout else 0

    def _braces(self, node: s.Syntax) -> tuple[Pos, Pos]:
        if self.layout is None:
            return (0, 0), (0, 0)
        start = self.layout.open_brace(node.span.line, node.span.column)
        return start, self.layout.closing.get(start, (node.span.end_line, node.span.end_column))

    def _blank(self, node: s.Syntax) -> bool:
        return self.layout.blank_before(node.span.line) if self.layout else False

    # top level
    def spec(self, spec: s.Spec) -> str:
        units: list[_Unit] = []
        for item in spec.items:
            units.extend(self._item(item))
        return _render(units, self.layout.comments if self.layout else [], self.layout)

    def _item(self, item: s.Item) -> list[_Unit]:
        if isinstance(item, s.Import):
            return [
                _Unit(
                    0,
                    [f'import "{item.path}"'],
                    self._line(item),
                    self._end(item),
                    blank=self._blank(item),
                    item="import",
                )
            ]
        if isinstance(item, s.BlockDef):
            head = f"block {item.name.text}({', '.join(_param(p) for p in item.params)})"
        else:
            params = ", ".join(_param(p) for p in item.params)
            head = f"network {item.name.text}" + (f"({params})" if item.params else "")
        units = self._with_body(0, [], head, item, item.body, inline=False, first=self._line(item))
        units[0].item = "block" if isinstance(item, s.BlockDef) else "network"
        units[0].blank = self._blank(item)
        return units

    def _with_body(
        self,
        indent: int,
        pieces: list[str],
        head: str,
        node: s.Syntax,
        body: tuple[s.Stmt, ...],
        *,
        inline: bool,
        first: int,
        alias: str = "",
    ) -> list[_Unit]:
        """Units for `pieces -> head { body } alias`; the last unit is open for more."""
        opening, closing = self._braces(node)
        text = self._inline(body, opening, closing, inline)
        if text is not None:
            return [_Unit(indent, [*pieces, f"{head} {text}{alias}"], first, closing[0])]
        units = [_Unit(indent, [*pieces, f"{head} {{"], first, opening[0])]
        for stmt in body:
            units.extend(self._stmt(stmt, indent + 1))
        units.append(_Unit(indent, ["}" + alias], closing[0], closing[0], closing=True))
        return units

    def _inline(
        self, body: tuple[s.Stmt, ...], opening: Pos, closing: Pos, allowed: bool
    ) -> str | None:
        """`{ chain }` when the body may stay on one line, else None."""
        if self.layout is not None and self.layout.has_comment(opening, closing):
            return None
        if not body:
            return "{}"
        if not allowed or len(body) != 1 or not isinstance(body[0], s.Chain):
            return None
        chain = body[0]
        if not all(isinstance(step, s.Call) for step in chain.steps):
            return None
        text = self._chain_text(chain)
        return f"{{ {text} }}" if len(text) + 4 <= INLINE_WIDTH else None

    def _chain_text(self, chain: s.Chain) -> str:
        pieces = [f"from {chain.source.text}"] if chain.source is not None else []
        pieces.extend(_call(step) for step in chain.steps)  # type: ignore[arg-type]
        text = ("frozen " if chain.frozen else "") + " -> ".join(pieces)
        if chain.check is not None:
            text += f" : {_expr(chain.check, _DIMS)}"
        return text

    # statements
    def _stmt(self, stmt: s.Stmt, indent: int) -> list[_Unit]:
        if isinstance(stmt, s.Chain):
            units = self._chain(stmt, indent)
        elif isinstance(stmt, s.Aux):
            kwargs = "".join(f" {_kwarg(k)}" for k in stmt.kwargs)
            units = self._with_body(
                indent,
                [],
                f"aux {stmt.name.text}{kwargs}",
                stmt,
                stmt.body,
                inline=True,
                first=self._line(stmt),
            )
            units[-1].last = max(units[-1].last, self._end(stmt))
        else:
            units = [_Unit(indent, [self._use(stmt)], self._line(stmt), self._end(stmt))]
        units[0].blank = self._blank(stmt)
        return units

    def _use(self, use: s.Use) -> str:
        text = f"use {use.network.text}"
        if use.args or use.kwargs:
            inner = [_expr(a, _DIMS) for a in use.args] + [_kwarg(k) for k in use.kwargs]
            text += f"({', '.join(inner)})"
        if use.upto is not None:
            text += f" upto {use.upto.text}"
        if use.frozen:
            text += " frozen"
            if use.frozen_upto is not None:
                text += f" upto {use.frozen_upto.text}"
        return text

    def _chain(self, chain: s.Chain, indent: int) -> list[_Unit]:
        pieces: list[str] = []
        if chain.source is not None:
            pieces.append(f"from {chain.source.text}")
        units: list[_Unit] = []
        first = self._line(chain)
        for step in chain.steps:
            if isinstance(step, s.Call):
                pieces.append(_call(step))
                continue
            made = self._step(step, indent, pieces, first)
            units.extend(made[:-1])
            pieces, first = made[-1].pieces, made[-1].first
        units.append(
            _Unit(
                indent,
                pieces,
                first,
                self._end(chain),
                closing=bool(units) and pieces[0].startswith("}"),
            )
        )
        if chain.frozen:
            units[0].pieces[0] = "frozen " + units[0].pieces[0].lstrip()
        if chain.check is not None:
            units[-1].check = _expr(chain.check, _DIMS)
        return units

    def _step(self, step: s.Step, indent: int, pieces: list[str], first: int) -> list[_Unit]:
        """The units of a step with a body; the last one is open for the rest of the chain."""
        alias = _alias(step.alias)
        if isinstance(step, s.Residual):
            kwargs = "".join(f" {_kwarg(k)}" for k in step.kwargs)
            return self._with_body(
                indent,
                pieces,
                f"residual{kwargs}",
                step,
                step.body,
                inline=False,
                first=first,
                alias=alias,
            )
        if isinstance(step, s.Repeat):
            return self._with_body(
                indent,
                pieces,
                f"repeat {_expr(step.count, _DIMS)}",
                step,
                step.body,
                inline=True,
                first=first,
                alias=alias,
            )
        if isinstance(step, s.Group):
            return self._with_body(
                indent, pieces, "", step, step.body, inline=True, first=first, alias=alias
            )
        assert isinstance(step, s.Merge), step
        opening, closing = self._braces(step)
        units = [_Unit(indent, [*pieces, f"{step.kind} {{"], first, opening[0])]
        for branch in step.branches:
            head = "branch" + (f" as {branch.alias.text}" if branch.alias else "")
            made = self._with_body(
                indent + 1, [], head, branch, branch.body, inline=True, first=self._line(branch)
            )
            made[0].blank = self._blank(branch)
            made[-1].last = max(made[-1].last, self._end(branch))
            units.extend(made)
        units.append(_Unit(indent, ["}" + alias], closing[0], closing[0], closing=True))
        return units


# Rendering: comments, blank lines, alignment, wrapping -------------------------------------


def _render(units: list[_Unit], comments: list[_Comment], layout: _Layout | None) -> str:
    for unit in units:
        # `{` of a group opening a chain prints as `{`, not ` {`
        unit.pieces = [p.lstrip() for p in unit.pieces]
    floating = _assign(units, comments)
    out: list[_Out] = []
    previous_item: str | None = None
    pending = 0
    for unit in units:
        group: list[_Out] = []
        while pending < len(floating) and floating[pending].line < unit.first:
            comment = floating[pending]
            pending += 1
            group.append(
                _Out(
                    lines=(INDENT * (unit.indent + unit.closing) + comment.text,),
                    blank=bool(layout and layout.blank_before(comment.line)),
                )
            )
        trailing = None
        if len(unit.comments) == 1 and not unit.comments[0].alone:
            trailing = unit.comments[0].text
        else:
            pad = INDENT * (unit.indent + unit.closing)
            group.extend(_Out(lines=(pad + c.text,)) for c in unit.comments)
        code = _Out(unit.indent, _wrap(unit), unit.check, trailing, unit.blank, unit.opens)
        group.append(code)
        if unit.closing:
            code.blank = False
        if unit.item is not None:
            if previous_item is not None and not (previous_item == unit.item == "import"):
                group[0].blank = True
            previous_item = unit.item
        if out and out[-1].opens:
            group[0].blank = False
        if not out:
            group[0].blank = False
        out.extend(group)
    for comment in floating[pending:]:
        out.append(
            _Out(
                lines=(comment.text,),
                blank=bool(out and layout and layout.blank_before(comment.line)),
            )
        )
    _align(out)
    lines: list[str] = []
    for item in out:
        if item.blank:
            lines.append("")
        lines.extend(item.lines)
    return "\n".join(lines) + "\n" if lines else ""


def _assign(units: list[_Unit], comments: list[_Comment]) -> list[_Comment]:
    """Give each comment to the last unit covering its line; return the others, in order."""
    lines = sorted({c.line for c in comments})
    owner: dict[int, _Unit] = {}
    for unit in units:
        start = bisect.bisect_left(lines, unit.first)
        stop = bisect.bisect_right(lines, max(unit.first, unit.last))
        for line in lines[start:stop]:
            owner[line] = unit
    floating: list[_Comment] = []
    for comment in comments:
        unit = owner.get(comment.line)
        if unit is None:
            floating.append(comment)
        else:
            unit.comments.append(comment)
    return floating


def _wrap(unit: _Unit) -> tuple[str, ...]:
    """The unit's code lines: one if it fits in `WIDTH`, else broken after `->`."""
    pad = INDENT * unit.indent
    text = pad + " -> ".join(unit.pieces)
    check = f" : {unit.check}" if unit.check is not None else ""
    if len(text) + len(check) <= WIDTH or len(unit.pieces) == 1:
        return (text,)
    lines: list[str] = []
    current = pad + unit.pieces[0]
    for piece in unit.pieces[1:]:
        if len(current) + 4 + len(piece) <= WIDTH:
            current += " -> " + piece
        else:
            lines.append(current + " ->")
            current = pad + INDENT + piece
    lines.append(current)
    return tuple(lines)


def _align(out: list[_Out]) -> None:
    """Align `: shape` assertions, then trailing comments, over runs of one-line statements."""

    def runs(has: str) -> list[list[_Out]]:
        found: list[list[_Out]] = []
        run: list[_Out] = []
        for item in out:
            single = len(item.lines) == 1 and not item.lines[0].lstrip().startswith("#")
            joins = (
                single
                and getattr(item, has) is not None
                and not item.blank
                and (not run or run[-1].indent == item.indent)
            )
            if joins:
                run.append(item)
            else:
                if run:
                    found.append(run)
                run = [item] if single and getattr(item, has) is not None else []
        if run:
            found.append(run)
        return found

    for run in runs("check"):
        width = max(len(item.lines[0]) for item in run)
        for item in run:
            item.lines = (f"{item.lines[0].ljust(width)} : {item.check}",)
            item.check = None
    for item in out:
        if item.check is not None:
            item.lines = (*item.lines[:-1], f"{item.lines[-1]} : {item.check}")
            item.check = None
    for run in runs("comment"):
        width = max(len(item.lines[0]) for item in run)
        for item in run:
            item.lines = (f"{item.lines[0].ljust(width)}  {item.comment}",)
            item.comment = None
    for item in out:
        if item.comment is not None:
            item.lines = (*item.lines[:-1], f"{item.lines[-1]}  {item.comment}")
            item.comment = None
