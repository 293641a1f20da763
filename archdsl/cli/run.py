"""`archdsl run model.jaxexport --weights w.safetensors --input x.npy [-o out.npy]`."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from archdsl.backend.export import run_exported
from archdsl.io import check_output


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `run` subcommand."""
    parser = sub.add_parser(
        "run",
        help="run an exported model on a .npy batch",
        description="Run a model exported by `archdsl compile -o model.jaxexport` "
        "on a batch of inputs (N, H, W, C) stored as .npy.",
    )
    parser.add_argument("model", help="the .jaxexport file")
    parser.add_argument("--weights", required=True, help="a .safetensors weights file")
    parser.add_argument("--input", required=True, help="a .npy batch, batch axis first")
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="let batch norms whose running statistics the weights lack start at "
        "mean 0, variance 1",
    )
    parser.add_argument(
        "-o", "--output", help="write the outputs here as .npy (default: print them)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the model; print the outputs unless `-o` names a file. Raises `ArchError`."""
    if args.output is not None:
        check_output(args.output)  # before any work
    out = run_exported(
        args.model, args.weights, args.input, args.output, allow_missing=args.allow_missing
    )
    if args.output is None:
        with np.printoptions(precision=6, suppress=True, threshold=sys.maxsize):
            print(out)
    else:
        print(f"wrote {args.output}: {out.shape[0]} outputs of shape {out.shape[1:]}")
    return 0
