"""``python -m renewals.sandbox [--host H] [--port P] [--state FILE]``."""

from __future__ import annotations

import argparse
import pathlib

from renewals.sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m renewals.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--state", type=pathlib.Path, default=None, help="SQLite state file")
    args = parser.parse_args(argv)
    serve(host=args.host, port=args.port, state_path=args.state)


if __name__ == "__main__":
    main()
