"""`--cache-frozen`: run the frozen part once, keep its outputs on disk, train the rest on them.

With everything up to a layer frozen (`use Base upto NAME frozen`), the frozen layers
compute the same features for an image every epoch (they take no gradient, and their
batch norms stay in inference mode). `split_frozen` cuts the graph at the one frozen
layer that feeds the trainable rest: the base (input to that layer) and the head (that
layer's output, now an input, to the end). `cache_features` runs the base once over a
dataset, in batches, into a float32 `.npy` file that training then reads through a
memory map, so neither the images nor the features need to fit in memory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from archdsl.backend.model import compile_graph
from archdsl.graph import ops
from archdsl.graph.ir import Graph, Node
from archdsl.train.config import ArchTrainError
from archdsl.train.data import Dataset, Split

Tree = dict[str, dict[str, Any]]


def frozen_boundary(graph: Graph) -> str:
    """The frozen layer whose output the trainable layers read.

    Raises:
        ArchTrainError: nothing is frozen, or the trainable layers read more than one
            frozen layer (or the input itself), so no single tensor can be cached.
    """
    (input_name,) = graph.inputs
    frozen = {name for name, node in graph.items() if node.frozen} | {input_name}
    if len(frozen) == 1:
        raise ArchTrainError(
            "`--cache-frozen` needs frozen layers, and this network has none",
            help="freeze the base: `use Base upto LAYER frozen`",
        )
    read = sorted(
        {i for name, node in graph.items() if name not in frozen for i in node.inputs} & frozen
    )
    if len(read) != 1 or read[0] == input_name:
        raise ArchTrainError(
            "`--cache-frozen` needs the trainable layers to read one frozen layer, "
            f"they read {', '.join(f'`{n}`' for n in read)}",
            help="freeze a prefix of the network: `use Base upto LAYER frozen`",
        )
    return read[0]


def split_frozen(graph: Graph) -> tuple[Graph, Graph]:
    """`(base, head)`: the frozen part ending at the boundary, and the rest starting there.

    Node names are kept on both sides, so weights match by name as in the whole network.
    """
    boundary = frozen_boundary(graph)
    keep = graph.ancestors(boundary) | {boundary}
    base = graph.copy()
    for name in [n for n in graph.order() if n not in keep]:
        base.remove(name)
    base.outputs, base.aux, base.checks = (boundary,), {}, []
    head = graph.copy()
    node = graph.node(boundary)
    assert node.shape is not None
    head.replace(boundary, Node(ops.Input(node.shape), (), node.span, node.shape))
    for name in [n for n in graph.order() if n in keep and n != boundary]:
        head.remove(name)
    head.checks = [c for c in graph.checks if c.node in head]
    return base, head


def cache_features(
    base: Graph,
    params: Tree,
    state: Tree,
    data: Dataset,
    path: Path,
    *,
    batch_size: int,
) -> np.ndarray:
    """The base's outputs for every example of `data`, written to `path` (`.npy`).

    Returns them as a read-only memory map of the file.
    """
    # Scanned, its params packed once: a deep base compiles one block per run.
    model = compile_graph(base, scan=True)
    params, state = model.pack(params), model.pack(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, "w+", np.float32, (len(data), *model.output_shape))
    apply = jax.jit(lambda p, s, x: model.apply(p, s, x)[0])
    for start in range(0, len(data), batch_size):
        x = np.asarray(data.x[start : start + batch_size])
        out[start : start + len(x)] = np.asarray(apply(params, state, x))
    out.flush()
    del out
    tmp.replace(path)
    return np.load(path, mmap_mode="r")


def cache_key(graph: Graph, boundary: str, init: str | None, data: Split) -> str:
    """A digest of what the cached features depend on, to reuse them across runs."""
    paths = [
        str(getattr(d.x, "paths", "")) if not isinstance(d.x, np.ndarray) else _digest(d.x)
        for d in (data.train, data.test)
    ]
    init_stat = ""
    if init is not None:
        stat = Path(init).stat()
        init_stat = f"{Path(init).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    text = json.dumps([graph.name, boundary, init_stat, paths, _normalisation(data)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def _normalisation(data: Split) -> Any:
    x = data.train.x
    return None if isinstance(x, np.ndarray) else [list(x.mean), list(x.std), list(x.shape)]


def cached_split(
    base: Graph, params: Tree, state: Tree, data: Split, folder: Path, key: str, batch_size: int
) -> tuple[Split, bool]:
    """The features of both parts of `data`, from `folder` when a run with `key` left them.

    Returns the split over features and whether they were already on disk.
    """
    paths = [folder / f"{key}.{part}.npy" for part in ("train", "test")]
    reused = all(p.exists() for p in paths)
    parts = []
    for dataset, path in zip((data.train, data.test), paths, strict=True):
        if reused:
            features = np.load(path, mmap_mode="r")
        else:
            features = cache_features(base, params, state, dataset, path, batch_size=batch_size)
        parts.append(Dataset(features, dataset.y, dataset.name))
    return Split(parts[0], parts[1]), reused


def loads_any(graph: Graph, init: tuple[Tree, Tree]) -> bool:
    """Whether any tensor of `init` fits `graph` by name and shape (`--init` would refuse)."""
    from archdsl.train.transfer import match_weights

    params, state = jax.eval_shape(compile_graph(graph).init, jax.random.key(0))
    return bool(match_weights(params, state, *init)[2].loaded)


def prepare(
    graph: Graph,
    data: Split,
    init: tuple[Tree, Tree] | None,
    init_path: str | None,
    folder: Path,
    *,
    batch_size: int,
    seed: int = 0,
) -> tuple[Graph, Split, Tree, Tree, str]:
    """Cut `graph` at its frozen boundary and cache the base's features of `data`.

    Returns the head graph, the split over features, the base's params and state (to
    put back together with the trained head) and a line saying what was done.
    """
    import time

    from archdsl.train.transfer import match_weights

    base, head = split_frozen(graph)
    boundary = head.inputs[0]
    params, state = compile_graph(base).init(jax.random.key(seed))
    if init is not None:
        params, state, report = match_weights(
            params, state, *init, frozen={n for n, _ in base.items()}
        )
        if report.frozen_initialised:
            raise ArchTrainError(
                f"{len(report.frozen_initialised)} frozen tensor(s) are not in "
                f"`{init_path}`: their cached outputs would come from random weights",
                notes=list(report.frozen_initialised[:6]),
            )
    key = cache_key(graph, boundary, init_path, data)
    start = time.perf_counter()
    features, reused = cached_split(base, params, state, data, folder, key, batch_size)
    seconds = time.perf_counter() - start
    shape = "x".join(map(str, features.train.x.shape[1:]))
    what = "reused" if reused else f"computed in {seconds:.1f} s"
    line = (
        f"cache    `{boundary}` ({shape}) of {len(features.train)} + {len(features.test)} "
        f"examples {what}: {folder}"
    )
    return head, features, params, state, line
