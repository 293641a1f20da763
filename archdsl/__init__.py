"""archdsl: a declarative language for neural-network architectures, compiled to JAX."""
