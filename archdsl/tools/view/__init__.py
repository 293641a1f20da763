"""`archdsl view`: the network as one interactive HTML page, written to disk or served live.

`data` turns a checked graph (or a spec's errors) into the page's JSON, `page` wraps
it with the inlined script, style and layout library (dagre, vendored in `assets/`),
and `server` serves it on the loopback interface, rebuilding as the files change.
"""
