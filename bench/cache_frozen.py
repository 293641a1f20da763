"""`--cache-frozen` against plain training: epoch time with a frozen ResNet-18 base.

    python bench/cache_frozen.py [--images 320] [--epochs 4] [--size 64]

Builds a small image folder (two classes, random pictures) in a temporary folder and
trains `use ResNet18(size) upto avgpool frozen` + a new dense head on it, `--epochs`
epochs each way, batch 16. Prints the per-epoch seconds as `archdsl train` reports
them (the first epoch includes compiling) and, for the cached run, the one-off time to
compute and store the features.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archdsl.cli.main import main as archdsl  # noqa: E402

SPEC = """import "resnet18.arch"

network FrozenResNet18(classes = 2) {{
    use ResNet18(size = {size}) upto avgpool frozen
    dense classes as fc : classes
}}
"""


def make_pictures(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("blue", "red")):
        (folder / name).mkdir(parents=True)
        for i in range(n // 2):
            pixels = rng.integers(0, 120, (256, 256, 3))
            pixels[..., 0 if label else 2] += 120
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{i}.jpg")


def run(args: list[str]) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = archdsl(args)
    out = buffer.getvalue()
    if code != 0:
        raise SystemExit(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_pictures(folder / "pictures", options.images)
        spec = folder / "frozen.arch"
        spec.write_text(SPEC.format(size=options.size))
        common = ["train", str(spec), "--data", str(folder / "pictures"), "--batch-size", "16",
                  "--epochs", str(options.epochs), "--lr", "0.01"]  # fmt: skip
        rows = []
        for label, extra in (("uncached", []), ("--cache-frozen", ["--cache-frozen"])):
            out = run([*common, "--checkpoint-dir", str(folder / label), *extra])
            seconds = [float(s) for s in re.findall(r"ex/s\s+([\d.]+)s", out)]
            cache = re.search(r"computed in ([\d.]+) s", out)
            accuracy = re.search(r"held-out accuracy ([\d.]+)%", out)
            rows.append((label, seconds, cache.group(1) if cache else "", accuracy))
    print(f"ResNet-18 base at {options.size}x{options.size}, frozen up to avgpool; "
          f"{options.images} images (80% trained on), batch 16")  # fmt: skip
    print(
        "| run | feature cache (s) | "
        + " | ".join(f"epoch {i + 1} (s)" for i in range(options.epochs))
        + " | held-out acc |"
    )
    print("| --- | ---: | " + " | ".join("---:" for _ in range(options.epochs)) + " | ---: |")
    for label, seconds, cache, accuracy in rows:
        cells = " | ".join(f"{s:.2f}" for s in seconds)
        print(f"| {label} | {cache} | {cells} | {accuracy.group(1) if accuracy else ''}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
