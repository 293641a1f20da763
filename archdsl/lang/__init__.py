"""The language, first stage of the pipeline: text in, syntax out. `source` (files, spans),
`grammar` (finds `grammar/archdsl.lark`, which names no op), `parser` (text to the `syntax`
tree, with positioned errors), `loader` (imports, confined to the spec's folder), `values`
(evaluating expressions), `kinds` (the attribute kinds: coercion, syntax, docs) and `numbers`
(how shapes and counts are written). It knows statements and calls, not which layers
exist: that is the op table's business, in `graph`.

Imports nothing of `graph`, `backend`, `train`, `tools`, `testing` or `cli`
(tests/test_imports.py holds every rule).
"""
