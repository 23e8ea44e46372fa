"""``python -m drivers.simulator --port 15020 [--bacnet-port 47808]``: run the simulated building on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from drivers.simulator.building import serve


def main() -> None:
    parser = argparse.ArgumentParser(description="Simulated building on Modbus TCP (and BACnet/IP with --bacnet-port)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=15020, help="Modbus TCP port (default 15020, 0 = any)")
    parser.add_argument(
        "--bacnet-port",
        type=int,
        help="also run the BACnet/IP device on this UDP port of --host (0 = any; default: none)",
    )
    parser.add_argument(
        "--bacnet-address", help="the BACnet device's HOST/PREFIX:PORT instead (the prefix sets its broadcast address)"
    )
    parser.add_argument("--bacnet-instance", type=int, default=1001, help="BACnet device instance (default 1001)")
    parser.add_argument("--write-log", help="append one JSON line per Modbus write received to this file")
    args = parser.parse_args()
    bacnet_address = args.bacnet_address
    if bacnet_address is None and args.bacnet_port is not None:
        bacnet_address = f"{args.host}:{args.bacnet_port}"
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, bacnet_address, args.bacnet_instance, args.write_log))


if __name__ == "__main__":
    main()
