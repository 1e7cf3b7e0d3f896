"""What every process of the agent shares, at the bottom of the import graph.

The configuration, its types and their checks (`config`, `config_types`, `config_check`,
`http_options`), the supervisor link (`internal`), logging and redaction
(`logs`) and the one backoff policy (`backoff`). `agent/` (the supervisor and
the commands), `bus/` (the broker and the journal), `sinks/` (the workers) and
`alarms/` import from here; nothing here imports them, so the packages never
import each other in a circle (tests/test_import_graph.py walks the imports).
"""

__version__ = "0.1.0"
