"""The language server (`archdsl lsp`): diagnostics, hovers, navigation, completion, format.

`analysis` runs the front end once per change; `hover`, `navigate`, `complete` and
`diagnostics` read that analysis; `server` wires them to pygls. Imports `lang`, `graph`
and `tools.fmt`; never `backend` (no JAX: the server starts fast).
"""
