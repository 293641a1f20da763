"""`archdsl zoo`: the bundled specs, usable by name (`archdsl compile resnet50`)."""

from __future__ import annotations

import argparse

from archdsl.lang.bundled import bundled_dir, bundled_specs


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `zoo` subcommand."""
    parser = sub.add_parser(
        "zoo",
        help="list the bundled specs",
        description=(
            "List the specs that ship with archdsl. Any command that takes a spec file "
            "takes one of these names too (`archdsl compile mobilenet_v2`), and a spec "
            'can `import "resnet_blocks.arch"` without a copy beside it.'
        ),
    )
    parser.add_argument("--path", action="store_true", help="print the folder they are in")
    parser.set_defaults(func=run)


def summary(path: object) -> str:
    """What a spec holds, from its header comment: `# specs/x.arch - WHAT (source...`."""
    with open(path, encoding="utf-8") as stream:  # type: ignore[call-overload]
        first = stream.readline().strip()
    return first.partition(" - ")[2].split(" (")[0].rstrip(",")


def run(args: argparse.Namespace) -> int:
    """Print name and description of each bundled spec (or the folder with `--path`)."""
    if args.path:
        print(bundled_dir() or "")
        return 0
    specs = bundled_specs()
    width = max(map(len, specs), default=0)
    for name, path in specs.items():
        print(f"{name:<{width}}  {summary(path)}")
    return 0
