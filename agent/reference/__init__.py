"""The reference pages of docs/ generated from the code (docs/README.md): the
control API (api), eventsinkctl's commands (commands), the config (config),
the events (events) and the metrics (metrics), written or checked by
documents (`python -m agent.reference --write`).
"""
