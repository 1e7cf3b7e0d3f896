"""`python -m console`: the console process, as the supervisor starts it (spec on stdin)."""

import sys

from console.app import main

sys.exit(main())
