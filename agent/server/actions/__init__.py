"""The server side of the control commands: one `Action` per command
description in agent/commands/, in a module of the same name (the pattern is
told in agent/commands/__init__.py), gathered in agent/server/actions/registry.py.
Imported by the control server, the supervisor and agent/server/openapi.py; never by
`eventsinkctl` (docs/control-api.md).
"""
