"""`python -m etl.demo PATH [--users N] [--seed S] [--days D]`: build the demo warehouse and print a summary."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from etl.demo.warehouse import build_demo_warehouse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m etl.demo", description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args(argv)
    summary = build_demo_warehouse(args.path, users=args.users, seed=args.seed, days=args.days)
    print(json.dumps(asdict(summary), default=str, indent=2))


if __name__ == "__main__":
    main()
