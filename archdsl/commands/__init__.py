"""Subcommands of the `archdsl` CLI, one module each with `register(subparsers)`."""
