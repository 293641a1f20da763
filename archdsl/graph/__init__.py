"""The checked graph, second stage: `ops` (the op table, one module per family: shape
rules, parameters, cost), `bind` (arguments to attributes), `lower` (syntax to the `ir`
graph, naming every node), `passes` (shape inference, residual projections, checks, the
training rewrite) and `report` (parameters and MACs). Every shape is computed here, once;
later stages read them and never re-derive one.

May import `lang`; never `backend`, `train`, `tools`, `testing` or `cli`, nor the entry
points above it, and never JAX.
"""
