"""The language: source text and spans, the grammar, the AST, the parser and the import loader.

Imports nothing of `graph`, `backend`, `train`, `tools` or `cli`.
"""
