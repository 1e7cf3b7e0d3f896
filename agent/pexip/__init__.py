"""`eventsink-agent import-pexip`: an agent.toml from a Pexip Infinity Management
Node's export (importer), the saved API answers it reads (answers) and the
TOML and password files it writes (output).
"""
