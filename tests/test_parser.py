"""Snippets to expected ASTs (spans are excluded from ==), and the grammar's accept/reject table."""

from __future__ import annotations

import pytest

from archdsl.errors import ArchSyntaxError
from archdsl.lang import syntax as s
from archdsl.lang.parser import parse


def _sp() -> s.Span:
    return None  # type: ignore[return-value]  # spans are compare=False


def ident(text: str) -> s.Ident:
    return s.Ident(text=text, span=_sp())


def call(
    op: str, *args: s.Expr, kwargs: tuple[s.Kwarg, ...] = (), alias: str | None = None
) -> s.Call:
    return s.Call(
        op=ident(op), args=args, kwargs=kwargs, alias=ident(alias) if alias else None, span=_sp()
    )


def chain(
    *steps: s.Step, check: s.Expr | None = None, source: str | None = None, frozen: bool = False
) -> s.Chain:
    return s.Chain(
        source=ident(source) if source else None,
        steps=steps,
        check=check,
        frozen=frozen,
        span=_sp(),
    )


def net(body: tuple[s.Stmt, ...], params: tuple[s.Param, ...] = ()) -> s.Spec:
    return s.Spec(
        items=(s.NetworkDef(name=ident("N"), params=params, body=body, span=_sp()),),
        source=None,
        span=_sp(),
    )  # type: ignore[arg-type]


def i(v: int) -> s.Int:
    return s.Int(value=v, span=_sp())


def size(*v: int) -> s.Size:
    return s.Size(value=v, span=_sp())


def name(v: str) -> s.Name:
    return s.Name(id=v, span=_sp())


def test_lenet_line() -> None:
    spec = parse("network N {\n    conv 6 5x5 valid -> tanh : 28x28x6\n}\n")
    assert spec == net(
        (chain(call("conv", i(6), size(5, 5), name("valid")), call("tanh"), check=size(28, 28, 6)),)
    )


def test_block_call_with_keywords_and_alias() -> None:
    spec = parse("network N {\n    basic(64, stride = 2) as layer1\n}")
    kw = s.Kwarg(name=ident("stride"), value=i(2), span=_sp())
    assert spec == net((chain(call("basic", i(64), kwargs=(kw,), alias="layer1")),))


def test_arithmetic_precedence_and_dims() -> None:
    spec = parse("network N {\n    input size x size x c * 2 + 1\n}")
    product = s.BinOp(op="*", left=name("c"), right=i(2), span=_sp())
    total = s.BinOp(op="+", left=product, right=i(1), span=_sp())
    dims = s.Dims(parts=(name("size"), name("size"), total), span=_sp())
    assert spec == net((chain(call("input", dims)),))


def test_network_parameters_with_range() -> None:
    spec = parse("network N(classes = 10, size = 224 in 32..512) {\n    input 8\n}")
    params = (
        s.Param(name=ident("classes"), default=i(10), span=_sp()),
        s.Param(name=ident("size"), default=i(224), low=i(32), high=i(512), span=_sp()),
    )
    assert spec == net((chain(call("input", i(8))),), params)


def test_constructs() -> None:
    text = """
import "blocks.arch"
block b(c, k = 3x3) {
    residual shortcut = zeropad {
        conv c k same
    } -> relu
}
network N {
    input 8x8x3 as stem
    concat {
        branch { conv 4 1x1 }
        branch as pool { maxpool 3x3 stride 1 same }
    }
    aux head weight = 0.3 { flatten -> dense 10 }
    from stem -> repeat 2 { b(4) }
    frozen { relu }
    use Base(classes = 10) upto layer3.1 frozen upto layer2
}
"""
    spec = parse(text)
    imp, block, network = spec.items
    assert imp == s.Import(path="blocks.arch", span=_sp())
    assert isinstance(block, s.BlockDef) and block.params[1].default == size(3, 3)
    residual = block.body[0].steps[0]  # type: ignore[union-attr]
    assert isinstance(residual, s.Residual)
    assert residual.kwargs[0].value == name("zeropad")
    assert isinstance(network, s.NetworkDef)
    kinds = [type(st).__name__ for st in network.body]
    assert kinds == ["Chain", "Chain", "Aux", "Chain", "Chain", "Use"]
    merge = network.body[1].steps[0]  # type: ignore[union-attr]
    assert isinstance(merge, s.Merge) and merge.kind == "concat"
    assert [b.alias.text if b.alias else None for b in merge.branches] == [None, "pool"]
    aux = network.body[2]
    assert isinstance(aux, s.Aux) and aux.name.text == "head"
    assert network.body[3].source == ident("stem")  # type: ignore[union-attr]
    assert isinstance(network.body[3].steps[0], s.Repeat)  # type: ignore[union-attr]
    assert network.body[4].frozen  # type: ignore[union-attr]
    use = network.body[5]
    assert isinstance(use, s.Use)
    assert (use.network.text, use.upto.text, use.frozen, use.frozen_upto.text) == (  # type: ignore[union-attr]
        "Base",
        "layer3.1",
        True,
        "layer2",
    )


def test_any_name_before_branches_is_a_merge_of_that_name() -> None:
    # The grammar names no op: `multiply` (or any future merge) parses as `concat` does.
    spec = parse(
        "network N {\n    multiply {\n        branch { relu }\n        branch { tanh }\n    } as m\n}"
    )
    merge = spec.items[0].body[0].steps[0]  # type: ignore[union-attr]
    assert isinstance(merge, s.Merge)
    assert (merge.kind, merge.alias.text, len(merge.branches)) == ("multiply", "m", 2)  # type: ignore[union-attr]


def test_spans_are_one_based_and_exclusive() -> None:
    spec = parse("network N {\n    conv 6 5x5\n}")
    step = spec.items[0].body[0].steps[0]  # type: ignore[union-attr]
    assert (step.op.span.line, step.op.span.column, step.op.span.end_column) == (2, 5, 9)


ACCEPT = [
    "",
    "# only a comment\n",
    "network N {}",
    "network N { input 8 }",
    "network N {\n\n  input 8\n\n  relu\n}\n",
    "network N { input 8 -> relu -> tanh }",
    "network N {\n  input 8 ->\n    relu\n}",
    "block b() { relu }",
    "network N { input 8; }".replace(";", ""),
    "network N(a, b = 2,) { input 8 }",
    "network N { input 8x8x3\n conv(4, 3x3, stride = 2) }",
    "network N { input 8\n dropout 0.5\n lrn 5 alpha = 1e-4 }",
]

REJECT = [
    ("network { }", "1:9"),
    ("network N { input 8 ", "1:21"),
    ("network N { conv 3 3x3 : }", "1:26"),
    ("block b { relu }", "1:9"),
    ("network N { input 8 } }", "1:23"),
    ("network N { input 8 @ }", "1:21"),
    ("netwrk N { }", "1:1"),
    ("network N { concat { relu } }", "1:22"),
]


@pytest.mark.parametrize("text", ACCEPT)
def test_accepts(text: str) -> None:
    parse(text)


@pytest.mark.parametrize(("text", "where"), REJECT)
def test_rejects_with_position(text: str, where: str) -> None:
    with pytest.raises(ArchSyntaxError) as caught:
        parse(text, "t.arch")
    assert str(caught.value).startswith(f"t.arch:{where}: error: ")
