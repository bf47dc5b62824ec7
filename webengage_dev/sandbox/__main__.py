"""``python -m webengage_dev.sandbox``: run the sandbox in the foreground.

With ``--port 0`` a free port is chosen and printed alone on stdout's first line, for a parent process.
"""

from __future__ import annotations

import argparse
import json

from webengage_dev.sandbox.config import SandboxConfig
from webengage_dev.sandbox.runner import bind_socket, serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m webengage_dev.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--config-json", default="{}", help="SandboxConfig fields as a JSON object")
    args = parser.parse_args(argv)
    try:
        config = SandboxConfig.from_mapping(json.loads(args.config_json))
    except (ValueError, TypeError) as exc:
        parser.error(f"--config-json: {exc}")
    sock = bind_socket(args.host, args.port)
    if args.port == 0:
        print(sock.getsockname()[1], flush=True)
    serve(config, args.host, sock.getsockname()[1], sock=sock)


if __name__ == "__main__":
    main()
