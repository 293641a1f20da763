"""Tools over the language and the graph: fmt, draw and fuzz.

May import `lang` and `graph` (and `backend` only where a check needs it).
"""
