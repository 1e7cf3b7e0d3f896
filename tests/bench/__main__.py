"""`make bench` / `python -m tests.bench [--tiny] [--out DIR]`: run every row, print the table, save results.

Installs what the bench alone needs into the running venv (matplotlib, for the
chart; never part of requirements-test). nginx and wrk come from Debian
(`make apt`, run by `make bench`, installs them when root).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

from tests.bench import report
from tests.bench.servers import NGINX, WRK
from tests.bench.suite import RESULTS, TINY, Sizes, run_all


def ensure_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        return
    print("bench: installing matplotlib into this venv (for the chart)", flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], timeout=600)
    if done.returncode != 0:
        print("bench: could not install matplotlib; the chart is skipped", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (seconds, not minutes; figures meaningless)")
    parser.add_argument("--out", default=RESULTS, help=f"results folder (default {RESULTS})")
    args = parser.parse_args()
    for tool in (NGINX, WRK):
        if not os.access(tool, os.X_OK):
            print(
                f"bench: {tool} is missing: run 'make apt' as root (Debian packages nginx-light and wrk)",
                file=sys.stderr,
            )
            return 1
    ensure_matplotlib()
    last = report.load_last(args.out)
    results = run_all(
        TINY if args.tiny else Sizes(),
        sizes_name="tiny" if args.tiny else "full",
        say=lambda line: print(line, flush=True),
    )
    paths = report.write(results, args.out, last)
    print()
    print(report.render(results, last))
    print()
    print(f"bench: {results['elapsed']:.0f} s; saved " + ", ".join(paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
