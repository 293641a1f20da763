"""JAX backend: one lowering per op, compilation to jitted functions, export and weights files.

May import `lang` and `graph`.
"""
