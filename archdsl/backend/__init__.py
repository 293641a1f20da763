"""The JAX backend, third stage: `layer` (what a lowering makes, and `LOWERINGS`, keyed by op
class), `lowerings` (one module per op family, mirroring `graph.ops`), `model`
(`compile_graph`: the jitted `init` and `apply` of a whole graph), `export` (jax.export)
and `weights` (safetensors files and importers).

May import `lang` and `graph`; never `train`, `tools`, `testing` or `cli`.
"""
