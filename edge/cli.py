"""The `rokt-edge` command (also `python -m edge`)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import logging
import socket
import sys
import time
from collections.abc import Sequence

from edge import __version__
from edge.settings import Settings, SettingsError, documented_settings, load_settings
from edge.store.errors import StoreError

# Exit codes: 0 success, 1 some input was invalid, 2 the command could not run as asked,
# 3 the service did not start.
EXIT_INVALID = 1
EXIT_USAGE = 2
MAX_WORKERS = 64
SHARED_STORES = ("postgresql:",)  # stores several processes serve from at once
WORKERS_NEED_SHARED = (
    "several serving processes need a PostgreSQL store (ROKT_EDGE_DATABASE_URL="
    "postgresql://…); a SQLite store is written by one process: run one edge per SQLite file"
)
EXIT_STARTUP = 3  # the service did not start (uvicorn's own code for it)
BUSY_PORT_HINT = " (another process is listening there: stop it, or choose another --port)"
# The collector's thresholds while serving (`tune_collector`): youngest, middle, oldest.
GC_THRESHOLDS = (20_000, 50, 100)
uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's own lines (start, stop) go there


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(config_file=args.config)
        result: int = args.run(args, settings)
    except (SettingsError, StoreError) as error:
        print(f"rokt-edge: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `rokt-edge status | head`: the reader has what it wanted
        sys.stdout = None  # nothing more is flushed at exit
        return 0
    return result


def _parser() -> argparse.ArgumentParser:
    settings_help = "\n".join(
        f"  {name:<30} {doc} (default: {default})" for name, default, doc in documented_settings()
    )
    parser = argparse.ArgumentParser(
        prog="rokt-edge",
        description="Capture Rokt click ids first-party and deliver conversions to Rokt.",
        epilog="settings (environment variables, or the same names in lower case without the "
        f"prefix in a TOML file given with --config):\n{settings_help}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rokt-edge {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the edge service (beacon, snippet, delivery) until SIGINT or SIGTERM"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serving processes sharing the port (1); more than one needs a PostgreSQL store",
    )
    serve.set_defaults(run=_serve)

    deliver = commands.add_parser(
        "deliver",
        help="run the delivery loop alone (serve runs it too), until SIGINT or SIGTERM",
        description="Deliver what the outbox holds, as rokt-edge serve does, without serving: "
        "a separate delivery process beside a service, or after an import.",
    )
    deliver.set_defaults(run=_deliver)

    preview = commands.add_parser(
        "preview",
        help="print the exact upstream request bodies some events would produce; sends nothing",
    )
    preview.add_argument(
        "file", nargs="?", default="-", help="events: a JSON object, array or JSON lines (- stdin)"
    )
    preview.set_defaults(run=_preview)

    import_ = commands.add_parser(
        "import",
        help="put the rows of a CSV or JSON-lines export in the outbox, mapped by a map file",
        description="Each row becomes a conversion (or an audience update) through the same "
        "pipeline as the edge's events. Import only fills the outbox: the running edge, or "
        "rokt-edge deliver, delivers. Importing the same rows again sends nothing "
        "twice. Exit 0: every row was read; 1: some rows were invalid (listed on stderr); "
        "2: the file or the map file could not be used.",
    )
    import_.add_argument("file", help="the export: .csv (with a header row) or .jsonl")
    import_.add_argument(
        "--map", required=True, metavar="MAPFILE", help="TOML: which column feeds which field"
    )
    import_.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be sent (as preview does); store nothing",
    )
    import_.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    import_.set_defaults(run=_import)

    status = commands.add_parser(
        "status",
        help="queue depth, oldest pending event, dead letters, recent upstream errors",
    )
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=_status)

    recent = commands.add_parser(
        "recent",
        help="the latest outcomes of events, with the bodies sent or to be sent",
        description="The latest outcomes, newest first: delivered, recorded in a dry run, "
        "waiting (pending, retrying, in flight), skipped with its reason, or dead-lettered "
        "with the upstream's message; each with its time, message id and mapping, and the body "
        "that was or would be sent while the store keeps it (dry runs, waiting and dead items). "
        "Then the requests a dry run recorded (their bodies with --json). Personal data is "
        "shown as the store holds it (hashed where the mapping hashes it, raw otherwise): this "
        "is for the operator's own shell; the demo panel masks it.",
    )
    recent.add_argument("--json", action="store_true", help="print them as JSON")
    recent.add_argument(
        "--limit",
        type=_positive,
        default=20,
        metavar="N",
        help="at most N outcomes, and N dry-run requests (20)",
    )
    recent.set_defaults(run=_recent)

    replay = commands.add_parser(
        "replay", help="put dead letters (or what a dry run recorded) back in the queue"
    )
    kinds = replay.add_mutually_exclusive_group()
    kinds.add_argument("--dead", action="store_true", help="replay dead letters (the default)")
    kinds.add_argument(
        "--dry-run",
        action="store_true",
        help="send what a dry run recorded instead of sending (needs the credentials set)",
    )
    replay.add_argument(
        "--since",
        metavar="T",
        type=_since,
        help="only those dead-lettered (or recorded) since T: a duration ago (30m, 2h, 7d) or "
        "ISO 8601 time",
    )
    replay.set_defaults(run=_replay)
    for command in commands.choices.values():
        command.add_argument("--config", metavar="FILE", help="a TOML settings file")
    return parser


def _workers(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_WORKERS}, not {text!r}")
    return count


def tune_collector() -> None:
    """Fewer, cheaper passes of the cyclic garbage collector in the serving process.

    What is alive once the app is built is frozen out of all passes, and the youngest
    generation is collected every 20,000 allocations instead of 700 (a beacon makes a few
    hundred): why and what it gained, docs/architecture.md#serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from edge import server
    from edge.app import create_app
    from edge.logs import configure_logging
    from edge.pipeline.mapping import MappingConfigError
    from edge.store import open_store

    configure_logging(settings.log_format)
    if args.workers > 1 and not settings.database_url.startswith(SHARED_STORES):
        print(f"rokt-edge serve: --workers {args.workers}: {WORKERS_NEED_SHARED}", file=sys.stderr)
        return EXIT_USAGE
    # Where a browser on this machine reaches it, for the start-up line naming the demo.
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    try:
        app = create_app(settings, base_url=f"http://{_address(shown, args.port)}")
    except MappingConfigError as error:
        print(f"rokt-edge: {error}", file=sys.stderr)
        return EXIT_USAGE
    # Opened here, so a store that cannot be opened stops start-up with a plain message.
    open_store(settings).close()
    # The port too is taken before the app starts: uvicorn binds it only after the lifespan has
    # started (and said "ready"), then fails on a port in use.
    try:
        listener = listen(args.host, args.port)
    except OSError as error:
        in_use = error.errno == errno.EADDRINUSE
        print(
            f"rokt-edge serve: cannot listen on {_address(args.host, args.port)}: "
            f"{error.strerror or error}{BUSY_PORT_HINT if in_use else ''}",
            file=sys.stderr,
        )
        return EXIT_STARTUP

    class Server(uvicorn.Server):
        """uvicorn's, saying where it listens once it does, as it does for a socket of its own."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and sockets:
                where = _address(self.config.host, sockets[0].getsockname()[1])
                uvicorn_log.info("Uvicorn running on http://%s (Press CTRL+C to quit)", where)

    with listener:
        server.raise_open_files_limit()  # before the connection cap is fitted to it
        port = listener.getsockname()[1]
        serving = Server(server.config(app, settings, host=args.host, port=port))

        def run() -> int:
            tune_collector()
            with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: SIGINT: a normal stop
                serving.run(sockets=[listener])
            return 0 if serving.started else EXIT_STARTUP

        if args.workers == 1:
            return run()
        from edge.workers import supervise

        return supervise(args.workers, run)


def _deliver(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import signal

    from edge.delivery.sender import Sender, log
    from edge.logs import configure_logging
    from edge.store import open_store
    from edge.store.liveness import Liveness
    from edge.upstreams import upstream_for

    configure_logging(settings.log_format)
    store = open_store(settings)

    async def deliver() -> None:
        sender = Sender(settings, store, upstream_for(settings).wire)
        liveness = Liveness(store, freed=sender.notify)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, sender.stop)
        log.info(
            "delivering to %s (%s; dry run: %s)",
            settings.upstream_url, settings.upstream, settings.dry_run,
        )  # fmt: skip
        beating = asyncio.create_task(liveness.run(), name="rokt-edge-liveness")
        try:
            await sender.run()
        finally:
            liveness.stop()
            await beating

    try:
        asyncio.run(deliver())
    finally:
        store.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (as uvicorn binds one: IPv6 when the host has a colon),
    for uvicorn to listen on. Raises OSError when the port is taken or the host is not ours."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError:
        listener.close()
        raise
    return listener


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _preview(args: argparse.Namespace, settings: Settings) -> int:
    # Imported here: the mapping modules are only needed by the commands that map events.
    from edge.pipeline.mapping import MappingConfigError, load_mappings
    from edge.pipeline.pipeline import Pipeline
    from edge.preview import UnreadableInput, preview, read_events

    try:
        pipeline = Pipeline(settings, load_mappings(settings.mappings))
    except MappingConfigError as error:
        print(f"rokt-edge: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as file:
                text = file.read()
        raw_events = read_events(text)
    except (OSError, UnicodeDecodeError, UnreadableInput) as error:
        print(f"rokt-edge preview: {args.file}: {error}", file=sys.stderr)
        return EXIT_USAGE
    document, understood = preview(raw_events, pipeline)
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0 if understood else EXIT_INVALID


def _import(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    from pathlib import Path

    from tqdm import tqdm

    from edge.imports.mapfile import MapError, load_map
    from edge.imports.rows import UnreadableFile, read_rows
    from edge.imports.runner import Importer, dry_run_document, summary
    from edge.pipeline.pipeline import Pipeline
    from edge.store import open_store

    try:
        import_map = load_map(args.map)
    except MapError as error:
        print(f"rokt-edge import: {error}", file=sys.stderr)
        return EXIT_USAGE
    path = Path(args.file)
    try:
        file = path.open("rb")
        size = path.stat().st_size
    except OSError as error:
        print(f"rokt-edge import: {path}: {error.strerror or error}", file=sys.stderr)
        return EXIT_USAGE
    show = args.progress or sys.stderr.isatty()
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=path.name, file=sys.stderr,
               disable=not show, leave=False)  # fmt: skip
    store = None
    try:
        # A file that is not text at all is refused here, before the store is opened.
        rows = read_rows(
            file, path, columns=import_map.columns, progress=bar.update if show else None
        )
        pipeline = Pipeline(settings, [import_map.mapping])
        store = None if args.dry_run else open_store(settings, create=False)
        importer = Importer(import_map, pipeline, store, now=time.time())
        report = asyncio.run(importer.run(rows))
    except UnreadableFile as error:
        print(f"rokt-edge import: {path}: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        bar.close()
        file.close()
        if store is not None:
            store.close()
    for number, reason in report.invalid:
        print(f"{path}: row {number}: {reason}", file=sys.stderr)
    if args.dry_run:
        json.dump(dry_run_document(report, pipeline), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print("\n".join(summary(report, str(path))))
    return EXIT_INVALID if report.invalid else 0


def _since(text: str) -> float:
    from edge.status import parse_since

    try:
        return parse_since(text, time.time())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from edge import status
    from edge.store import open_store

    store = open_store(settings, create=False)
    try:
        stats = store.stats_sync()
    finally:
        store.close()
    document = status.document(stats, settings, time.time())
    if args.json:
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(status.text(document))
    return 0


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number above 0")
    return number


def _recent(args: argparse.Namespace, settings: Settings) -> int:
    from edge import recent
    from edge.store import open_store

    store = open_store(settings, create=False)
    try:
        latest = store.recent_sync(args.limit)
    finally:
        store.close()
    document = recent.document(latest, settings)
    if args.json:
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(recent.text(document))
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from edge.status import iso
    from edge.store import open_store

    if args.dry_run and settings.dry_run:
        print(
            "rokt-edge replay --dry-run: what a dry run recorded is sent by an edge with "
            "credentials: set ROKT_EDGE_API_KEY and ROKT_EDGE_API_SECRET (and no "
            "ROKT_EDGE_DRY_RUN=true), here and in the running edge",
            file=sys.stderr,
        )
        return EXIT_USAGE
    store = open_store(settings, create=False)
    try:
        if args.dry_run:
            count = store.replay_dry_runs_sync(since=args.since)
        else:
            count = store.replay_sync(since=args.since)
    finally:
        store.close()
    kind = "event(s) recorded in a dry run" if args.dry_run else "dead letter(s)"
    since = f" since {iso(args.since)}" if args.since is not None else ""
    print(f"replayed {count:,} {kind}{since}: back in the queue, to be sent")
    return 0
