"""`python -m agent`: the eventsink-agent command line (agent/cli.py)."""

from agent.cli import main

raise SystemExit(main())
