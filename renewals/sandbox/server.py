"""Serving the sandbox with uvicorn (httptools parser, uvloop event loop, no access log)."""

from __future__ import annotations

import logging
import pathlib
import socket

import uvicorn

from renewals.sandbox.app import ConnectionDropped, SandboxApp, create_app


class _DeliberateDropFilter(logging.Filter):
    """Hide uvicorn's 'Exception in ASGI application' for our deliberate connection drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


_FILTER = _DeliberateDropFilter()


def quiet_deliberate_drops() -> None:
    """Install the filter once on uvicorn's error logger (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


def uvicorn_config(
    app: SandboxApp, host: str, port: int, *, log_level: str, http: str = "httptools"
) -> uvicorn.Config:
    """Our uvicorn settings; ``http="h11"`` exists so tests can check the pure-Python parser."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=http,
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_level=log_level,
        server_header=False,
        date_header=False,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket, so port 0 yields a known free port before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    host: str = "127.0.0.1", port: int = 8787, state_path: pathlib.Path | None = None
) -> None:
    """Run the sandbox in the foreground until interrupted (``renewals sandbox``)."""
    quiet_deliberate_drops()
    app = create_app(state_path)
    server = uvicorn.Server(uvicorn_config(app, host, port, log_level="info"))
    server.run()
