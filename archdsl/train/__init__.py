"""Training: configuration, optax steps, the loop, data, checkpoints, transfer and parallelism.

May import `lang`, `graph` and `backend`.
"""
