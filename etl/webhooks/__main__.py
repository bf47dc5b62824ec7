"""``python -m etl.webhooks``: run the receiver in the foreground, configured by environment variables
(see :mod:`etl.webhooks.config`). With ``--port 0`` a free port is chosen and printed alone on stdout's
first line, for a parent process."""

from __future__ import annotations

import argparse
import logging
import sys

from etl.errors import ConfigError
from etl.webhooks.config import WebhookSettings
from etl.webhooks.runner import bind_socket, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m etl.webhooks", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)
    try:
        settings = WebhookSettings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sock = bind_socket(args.host, args.port)
    if args.port == 0:
        print(sock.getsockname()[1], flush=True)
    serve(settings, host=args.host, port=sock.getsockname()[1], sock=sock)


if __name__ == "__main__":
    main()
