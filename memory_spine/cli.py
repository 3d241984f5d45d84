"""The command line: `memory-spine serve | export-model`. Parses flags, builds objects, calls them.

No logic lives here: `serve` turns flags into `Settings` and runs uvicorn over `create_app(settings)`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback for info in socket.getaddrinfo(host, None))
        except (OSError, ValueError):
            return False


def _settings(args: argparse.Namespace, names: list[str]) -> Any:
    from .config import Settings

    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return Settings(**given)


def _serve(args: argparse.Namespace) -> int:
    from .config import Settings  # noqa: F401  (imported for its validation errors below)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    settings = _settings(
        args, ["host", "port", "data_dir", "database", "embedder", "token", "log_level", "embed_threads", "model_cache"]
    )
    if args.insecure:
        settings.insecure = True
    if not _is_loopback(settings.host) and settings.token is None and not settings.insecure:
        print(
            f"memory-spine: refusing to listen on {settings.host}, which is not a loopback address, without a"
            " token: anyone who can reach it could read and erase every memory. Set --token (or"
            " MEMORY_SPINE_TOKEN), or pass --insecure if the network is trusted.",
            file=sys.stderr,
        )
        return 2

    import uvicorn

    from . import allocator
    from .api.app import create_app
    from .logs import setup_logging

    # Before any worker thread exists: two malloc arenas instead of one per contending thread (see allocator).
    allocator.limit_arenas(2)
    setup_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        timeout_keep_alive=30,
        backlog=2048,
    )
    server = uvicorn.Server(config)

    def watch_loader() -> None:
        # If the service cannot open (data dir locked, unreadable, ...), stop the server: a process that
        # can never become healthy should exit with the reason, not linger.
        loader = getattr(app.state, "loader", None)
        if loader is not None:
            loader.join()
            if app.state.fatal is not None:
                server.should_exit = True

    import threading

    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        await original_startup(sockets=sockets)
        threading.Thread(target=watch_loader, daemon=True).start()

    server.startup = startup  # type: ignore[method-assign]
    # uvicorn re-raises the signal that stopped it once it has shut down gracefully, which would make a clean
    # SIGTERM stop exit with -15. The graceful shutdown (in-flight requests finished, index persisted) is
    # done by then, so the process should say so with exit code 0: make the re-raised signal a no-op.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    server.run()
    if app.state.fatal is not None:
        print(f"memory-spine: could not start: {app.state.load_error}", file=sys.stderr)
        return 1
    if not server.started:
        return 1
    return 0


def _fetch_model(args: argparse.Namespace) -> int:
    from .embedders import ModelUnavailable, fetch_model, model_dir

    cache = Path(args.model_cache) if args.model_cache else None
    try:
        path = fetch_model(cache, force=True) if args.force else model_dir(cache)
    except ModelUnavailable as exc:
        print(f"memory-spine: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _open_service(args: argparse.Namespace) -> Any:
    from .service import MemoryService

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return MemoryService.open(_settings(args, ["data_dir", "database", "embedder", "model_cache"]))


def _check(args: argparse.Namespace) -> int:
    import json

    from .errors import MemorySpineError

    try:
        with _open_service(args) as svc:
            report = svc.check(repair=args.repair)
    except MemorySpineError as exc:
        print(f"memory-spine: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    healthy = report["database"] == "ok" and (
        report.get("repaired") or (report["missing_from_index"] == 0 and report["extra_in_index"] == 0)
    )
    return 0 if healthy else 1


def _export(args: argparse.Namespace) -> int:
    from .errors import MemorySpineError
    from .transfer import export_jsonl

    try:
        with _open_service(args) as svc:
            out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
            try:
                n = export_jsonl(svc, out, vectors=args.vectors)
            finally:
                if args.output:
                    out.close()
    except MemorySpineError as exc:
        print(f"memory-spine: {exc.message}", file=sys.stderr)
        return 2
    print(f"exported {n} memories", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from .errors import MemorySpineError
    from .transfer import import_jsonl

    try:
        with _open_service(args) as svc:
            report = import_jsonl(svc, Path(args.file), batch_size=args.batch_size, progress=not args.quiet)
    except MemorySpineError as exc:
        print(f"memory-spine: {exc.message}", file=sys.stderr)
        return 2
    print(
        f"imported {report['imported']} memories, skipped {report['skipped']} already present,"
        f" embedded {report['embedded']}",
        file=sys.stderr,
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import json

    from .errors import MemorySpineError
    from .migrate import migrate_data_dir

    settings = _settings(args, ["data_dir", "database"])
    if not settings.database or not settings.database.startswith(("postgresql:", "postgres:")):
        print("memory-spine: migrate needs --database postgresql://... (or MEMORY_SPINE_DATABASE)", file=sys.stderr)
        return 2
    try:
        report = migrate_data_dir(
            settings.data_dir,
            settings.database,
            batch_size=args.batch_size,
            progress=not args.quiet,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
            ef_search=settings.hnsw_ef_search,
        )
    except MemorySpineError as exc:
        print(f"memory-spine: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


def _database_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        help="postgresql://user:pass@host/db to use PostgreSQL + pgvector (env MEMORY_SPINE_DATABASE);"
        " default: SQLite in the data dir",
    )


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", dest="data_dir", type=Path, help="the data dir (default ~/.local/share/memory-spine)")
    _database_arg(p)
    p.add_argument("--embedder", choices=["onnx", "sentence-transformers", "fake"], help="default onnx")
    p.add_argument("--model-cache", dest="model_cache", type=Path, help="where fetched model weights are cached")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memory-spine", description="A local memory service for AI agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (default 127.0.0.1:8788)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; env MEMORY_SPINE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8788; env MEMORY_SPINE_PORT)")
    serve.add_argument(
        "--data-dir",
        dest="data_dir",
        type=Path,
        help="where records and the index live (default ~/.local/share/memory-spine)",
    )
    serve.add_argument(
        "--embedder", choices=["onnx", "sentence-transformers", "fake"], help="embedding backend (default onnx)"
    )
    serve.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (env MEMORY_SPINE_TOKEN)")
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without a token")
    serve.add_argument("--log-level", dest="log_level", help="debug | info | warning | error")
    serve.add_argument("--embed-threads", dest="embed_threads", type=int, help="threads for the model (default 2)")
    serve.add_argument("--model-cache", dest="model_cache", type=Path, help="where fetched model weights are cached")
    _database_arg(serve)
    serve.set_defaults(func=_serve)

    for name in ("fetch-model", "export-model"):  # export-model: the name from before the graph shipped
        fetch = sub.add_parser(
            name,
            help="put the model weights in the cache now, e.g. when building an image (a no-op where they are"
            " installed)"
            if name == "fetch-model"
            else "the old name of fetch-model",
        )
        fetch.add_argument("--model-cache", dest="model_cache", help="cache dir (default ~/.cache/memory-spine)")
        fetch.add_argument("--force", action="store_true", help="fetch into the cache even if installed or cached")
        fetch.set_defaults(func=_fetch_model)

    check = sub.add_parser("check", help="verify the database and that the index matches it")
    _data_args(check)
    check.add_argument("--repair", action="store_true", help="rebuild the index if it does not match")
    check.set_defaults(func=_check)

    exp = sub.add_parser("export", help="write every memory as JSON lines (stdout or --output)")
    _data_args(exp)
    exp.add_argument("--output", "-o", help="file to write (default stdout)")
    exp.add_argument("--vectors", action="store_true", help="include the stored vectors")
    exp.set_defaults(func=_export)

    imp = sub.add_parser("import", help="load memories from JSON lines; re-running skips ids already present")
    imp.add_argument("file", help="a .jsonl file written by 'memory-spine export' (or by hand)")
    _data_args(imp)
    imp.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="records per transaction")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.set_defaults(func=_import)

    mig = sub.add_parser(
        "migrate", help="copy a data dir into PostgreSQL (vectors included, no re-embedding; resumable)"
    )
    mig.add_argument("--data-dir", dest="data_dir", type=Path, help="the data dir to copy (stop its server first)")
    _database_arg(mig)
    mig.add_argument("--batch-size", dest="batch_size", type=int, default=2000, help="records per transaction")
    mig.add_argument("--quiet", action="store_true", help="no progress bar")
    mig.set_defaults(func=_migrate)

    from . import mcp_server  # imports the mcp SDK only when the command runs

    mcp = sub.add_parser("mcp", help="serve the MCP tools over stdio, or streamable HTTP with --http (port 8789)")
    mcp_server.add_arguments(mcp)
    mcp.set_defaults(func=mcp_server.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
