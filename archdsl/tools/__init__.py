"""Tools over the language and the graph, beside the pipeline: `fmt` (the canonical layout
of a spec), `draw` (Graphviz pictures; styles keyed by op class) and `fuzz` (a spec's
declared ranges searched for a size that breaks it).

May import `lang`, `graph`, the front end, and `backend` or `testing` only where a check
needs them; never `train` or `cli`, and no private name of another part.
"""
