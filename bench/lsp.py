"""Time from `didChange` to fresh diagnostics, over stdio, on ResNet-152 (goal: < 100 ms).

    python bench/lsp.py [--spec specs/resnet152.arch] [--edits 40]

Starts `archdsl lsp` as an editor would, opens the spec, then sends whole-text changes
and waits for the `publishDiagnostics` of each new version. The edits cycle through
what a user does while typing: a valid change (the input size), a typo in a name (a name
error), a half-typed line (a syntax error, recovered), and the fix. Prints the median,
the 95th percentile and the worst time per kind of edit.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from archdsl.tools.lsp.client import LspClient

ROOT = Path(__file__).resolve().parents[1]


def edits(text: str) -> list[tuple[str, str, int]]:
    """(kind, new text, expected diagnostic count) for one round of typing."""
    width = text.replace("size = 224", "size = 256")
    typo = text.replace("dense classes as fc", "dense clases as fc")
    half = text.replace("globalavgpool as avgpool", "globalavgpool as avgpool ->")
    return [
        ("valid", width, 0),
        ("name error", typo, 1),
        ("syntax error", half, 1),
        ("fix", text, 0),
    ]


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=str(ROOT / "specs" / "resnet152.arch"))
    parser.add_argument("--edits", type=int, default=40)
    args = parser.parse_args()
    path = Path(args.spec).resolve()
    text = path.read_text(encoding="utf-8")
    uri = path.as_uri()
    times: dict[str, list[float]] = {}
    with LspClient(cwd=str(ROOT)) as client:
        client.initialize(path.parent)
        started = time.perf_counter()
        client.open(uri, text)
        client.wait_diagnostics(uri)
        opened = time.perf_counter() - started
        round_ = edits(text)
        for i in range(args.edits):
            kind, new_text, expected = round_[i % len(round_)]
            started = time.perf_counter()
            client.change(uri, new_text)
            diagnostics = client.wait_diagnostics(uri)
            times.setdefault(kind, []).append(time.perf_counter() - started)
            assert len(diagnostics) == expected, (kind, diagnostics)
    every = [t for ts in times.values() for t in ts]
    print(f"{path.name}: first analysis on didOpen {opened * 1000:.0f} ms")
    print(f"{'edit':<14}{'n':>4}{'median ms':>11}{'p95 ms':>9}{'max ms':>9}")
    for kind, ts in [*times.items(), ("all", every)]:
        ts = sorted(ts)
        p95 = ts[min(len(ts) - 1, round(0.95 * (len(ts) - 1)))]
        print(
            f"{kind:<14}{len(ts):>4}{statistics.median(ts) * 1000:>11.1f}"
            f"{p95 * 1000:>9.1f}{ts[-1] * 1000:>9.1f}"
        )


if __name__ == "__main__":
    main()
