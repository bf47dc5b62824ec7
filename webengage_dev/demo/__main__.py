"""`python -m webengage_dev.demo PATH [--users N] [--seed S] [--days D] [--as-of ISO]`: build the demo
warehouse and print a summary. Without --as-of the data is built relative to the start of the current hour."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime

from webengage_dev.demo.warehouse import build_demo_warehouse, demo_as_of


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m webengage_dev.demo", description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--as-of", type=datetime.fromisoformat, default=None, help="ISO 8601; UTC when naive")
    args = parser.parse_args(argv)
    as_of = args.as_of or demo_as_of(datetime.now(UTC))
    summary = build_demo_warehouse(args.path, users=args.users, seed=args.seed, days=args.days, as_of=as_of)
    print(json.dumps(asdict(summary), default=str, indent=2))


if __name__ == "__main__":
    main()
