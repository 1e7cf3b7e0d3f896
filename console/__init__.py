"""The browser console (docs/console.md): Pexip's Event sinks page on the node.

A child process of the supervisor, started only when `[console] listen` is set.
It is a client of the control socket, as `eventsinkctl` is, and reaches nothing
else of the agent; it never holds a sink's secrets (its spec carries only the
`[console]` section and the control socket's path). The web side (sessions as
signed cookies, anti-forgery tokens, escaping templates, static files, TLS) is
tornado's: see README, "The console".

Modules: `app` (the process: spec, application, server), `security` (login,
sessions, rate limit, headers), `pages` (the server-rendered pages and their
actions), `live` (the deliveries stream, to browsers as Server-Sent Events),
`agent_api` (the control socket, off the event loop), `schema_view` (the event
schema as tables).
"""
