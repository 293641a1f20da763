"""`--shard-params`: the parameter and Adam-state bytes that one device holds, per model axis.

    python bench/shard_bytes.py [--devices 8] [specs/resnet50.arch ...]

Starts JAX with `--devices` CPU host devices, builds each network, initialises it once,
then places the parameters and Adam's state on a `devices/M x M` mesh for M = 1, 2, 4, ...
by the rule `archdsl train --shard-params` uses (`train.sharding.Layout`), and reports
what device 0 holds: the sum of `shard.data.nbytes` over its shards, as `archdsl train`
prints it. Nothing is trained: the placement is real, the figures are exact.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPECS = ("specs/lenet5.arch", "specs/resnet18.arch", "specs/resnet50.arch", "specs/vgg16.arch")


def main() -> None:
    """Print one markdown row per network."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", default=SPECS)
    parser.add_argument("--devices", type=int, default=8)
    args = parser.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax

    from archdsl.backend.model import compile_graph
    from archdsl.frontend import build_graph
    from archdsl.graph.passes.training import training_graph
    from archdsl.io import format_bytes
    from archdsl.train.config import TrainConfig
    from archdsl.train.parallel import make_mesh
    from archdsl.train.sharding import Layout, device_bytes
    from archdsl.train.steps import make_optimizer

    parts = [m for m in (1, 2, 4, 8, 16) if args.devices % m == 0]
    print("| network | parameters | " + " | ".join(f"M={m}" for m in parts) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in parts) + " |")
    optimizer = make_optimizer(TrainConfig(optimizer="adam"), 100)
    for spec in args.specs:
        graph = build_graph(spec)
        model = compile_graph(training_graph(graph))
        params, _ = jax.device_get(model.init(jax.random.key(0)))
        count = sum(x.size for x in jax.tree.leaves(params))
        cells = []
        for m in parts:
            layout = Layout(make_mesh(args.devices, m), shard=m > 1)
            placed = layout.place(params)
            shapes = jax.eval_shape(optimizer.init, params)
            state = jax.jit(optimizer.init, out_shardings=layout.of(shapes))(placed)
            p_held, p_all = device_bytes(placed)
            o_held, o_all = device_bytes(state)
            cells.append(
                f"{format_bytes(p_held)} + {format_bytes(o_held)} "
                f"({(p_held + o_held) / (p_all + o_all):.1%})"
            )
            del placed, state
        print(f"| {graph.name} | {count:,} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
