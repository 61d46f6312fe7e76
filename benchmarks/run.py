"""Run the benchmarks of one area, or of all: `python -m benchmarks.run [extract|transform|passback|demo_servers|all] [options]`.

Each area is a module `benchmarks/<area>.py` with `main(argv: list[str]) -> None`; the options after
the area name go to it (`python -m benchmarks.run extract --help`). `all` runs every area with its
defaults.
"""

from __future__ import annotations

import importlib
import sys

AREAS = ("extract", "transform", "passback", "demo_servers")


def main(argv: list[str]) -> int:
    area, rest = (argv[0], argv[1:]) if argv and not argv[0].startswith("-") else ("all", argv)
    if area not in (*AREAS, "all"):
        print(f"unknown area {area!r}: choose one of {', '.join(AREAS)} or all", file=sys.stderr)
        return 2
    if area != "all":
        importlib.import_module(f"benchmarks.{area}").main(rest)
        return 0
    for name in AREAS:
        print(f"== {name}")
        importlib.import_module(f"benchmarks.{name}").main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
