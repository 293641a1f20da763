"""Training: `config` (the options), `steps` (loss, optax, jitted steps), `loop` (epochs,
checkpoints, Ctrl-C, resume), `progress` (the bar and epoch lines), `data`, `checkpoint`,
`transfer` (weights matched by name) and `parallel` (data-parallel meshes).

May import `lang`, `graph` and `backend`, through their public names; never `tools`,
`testing` or `cli`.
"""
