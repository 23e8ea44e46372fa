"""``python -m drivers.simulator --port 15020``: run the simulated building on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from drivers.simulator.building import serve


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulated building on Modbus TCP")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=15020, help="Modbus TCP port (default 15020, 0 = any)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
