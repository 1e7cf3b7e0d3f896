"""`python -m agent.reference --write | --check` (agent/reference/documents.py)."""

import sys

from agent.reference.documents import main

sys.exit(main())
