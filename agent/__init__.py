"""eventsink-agent: the supervisor side, in rooms.

supervision/ (the supervisor process, its children, their states, deadlines and
reports, metrics), server/ (the control server and each command's action),
commands/ (what each control command is, for both ends), client/ (eventsinkctl),
reference/ (the generated pages of docs/), pexip/ (import-pexip), and here the
eventsink-agent command line (cli, console_password) and the demo.
"""

from common import __version__  # noqa: F401 - the agent's version, defined once in common/
