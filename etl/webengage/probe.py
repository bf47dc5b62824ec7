"""Reachability of the API host without an HTTP request: the name resolves, a TCP connection opens and, for
``https``, the TLS handshake succeeds with a certificate valid for the host. Sends no bytes of HTTP."""

from __future__ import annotations

import socket
import ssl
from typing import Final

import httpx

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def unreachable_reason(base_url: str, *, timeout_s: float) -> str | None:
    """Why ``base_url``'s host cannot be reached from here (DNS, TCP or TLS), or None when it can."""
    url = httpx.URL(base_url)
    host, scheme = url.host, url.scheme
    if scheme not in _DEFAULT_PORTS or not host:
        return f"{base_url!r} is not an http:// or https:// URL"
    port = url.port or _DEFAULT_PORTS[scheme]
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return f"host {host} does not resolve ({exc})"
    if not addresses:
        return f"host {host} does not resolve"
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except TimeoutError:
        return f"{host}:{port} did not accept a connection within {timeout_s:g}s"
    except OSError as exc:
        return f"{host}:{port} refused the connection ({exc.strerror or exc})"
    try:
        if scheme == "https":
            context = ssl.create_default_context()
            try:
                with context.wrap_socket(sock, server_hostname=host):
                    pass
            except ssl.SSLCertVerificationError as exc:
                return f"TLS to {host}:{port}: certificate not valid for this host ({exc.verify_message})"
            except (ssl.SSLError, OSError) as exc:
                return f"TLS handshake with {host}:{port} failed ({exc})"
    finally:
        sock.close()
    return None
