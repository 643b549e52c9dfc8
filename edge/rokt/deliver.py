"""`python -m edge.rokt.deliver [--config FILE]`: the delivery loop alone, until SIGTERM.

`rokt-edge serve` runs the same loop (`edge.rokt.sender.Sender`) inside the service; this runs it
as a separate delivery process (and is what the crash test kills).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from edge.rokt.sender import Sender, log
from edge.settings import SettingsError, load_settings
from edge.store import open_store
from edge.store.errors import StoreError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge.rokt.deliver", description="Run the delivery loop alone."
    )
    parser.add_argument("--config", metavar="FILE", help="a TOML settings file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings(config_file=args.config)
        store = open_store(settings)
    except (SettingsError, StoreError) as error:
        print(f"rokt-edge sender: {error}", file=sys.stderr)
        return 2

    async def deliver() -> None:
        sender = Sender(settings, store)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, sender.stop)
        log.info(
            "delivering to %s (%s; dry run: %s)",
            settings.upstream_url, settings.upstream, settings.dry_run,
        )  # fmt: skip
        await sender.run()

    try:
        asyncio.run(deliver())
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
