"""The checked graph: shapes, the op table, the IR, lowering from the AST, passes and the report.

May import `lang`; never `backend`, `train`, `tools` or `cli` (and never JAX).
"""
