"""Training: `config` (the options), `steps` (loss, optax, jitted steps), `loop` (epochs,
checkpoints, Ctrl-C, resume), `progress` (the bar and epoch lines), `data`, `checkpoint`,
`transfer` (weights matched by name), `parallel` (data-parallel meshes), `sharding`
(`--shard-params`), `distributed` (several processes) and `packed` (the scanned
lowering's stacked trees, per layer wherever names show).

May import `lang`, `graph` and `backend`, through their public names; never `tools`,
`testing` or `cli`.
"""
