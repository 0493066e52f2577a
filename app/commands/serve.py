"""``flywheel serve``, the live service, and ``flywheel keys``, the API keys it accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from flywheel.app.context import _settings
from flywheel.app.output import JsonFlag, answer, err, handles_errors

if TYPE_CHECKING:
    from flywheel.keys import KeyInfo

keys_app = typer.Typer(
    help="API keys for `flywheel serve` (only salted hashes are stored, in the state "
    "store: every replica sharing it sees the same keys).",
    no_args_is_help=True,
)


@handles_errors
def serve(
    host: Annotated[
        str, typer.Option(help="Interface to listen on (behind a reverse proxy, keep 127.0.0.1).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0 picks a free one).")] = 8700,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes.")] = 1,
    access_log: Annotated[
        bool,
        typer.Option("--access-log/--no-access-log", help="Log each request line (method, path, status; never a key)."),
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Serve the HTTP API for a live product until interrupted; the base URL is the first line printed.

    Routes: POST /v1/feedback, GET /v1/champion, POST /v1/ask, POST /v1/opt-out, GET /healthz, GET /metrics;
    OpenAPI at /docs. Every route but /healthz needs `Authorization: Bearer KEY` (`flywheel keys create`).
    """
    from flywheel.app.serve.runner import run

    settings = _settings()
    settings.ensure_home()

    def announce(url: str) -> None:
        answer(as_json, {"base_url": url, "workers": workers, "docs": f"{url}/docs"}, lambda: print(url, flush=True))
        err.print(
            f"serving on {url} with {workers} worker(s); OpenAPI at {url}/docs (Ctrl-C to stop)",
            highlight=False,
            soft_wrap=True,
        )

    try:
        run(settings, host, port, workers, access_log, announce)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM after uvicorn shut down gracefully
        pass


@keys_app.command("create")
@handles_errors
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    scope: Annotated[
        str,
        typer.Option("--scope", help="ingest (post feedback), read (champion, ask, metrics) or admin (everything)."),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Create a key and print it once: only its salted hash is kept."""
    from flywheel.keys import open_keys

    settings = _settings()
    key = open_keys(settings).create(name, scope)
    answer(as_json, {"name": name, "scope": scope, "key": key}, lambda: _print_key(name, scope, key))


def _print_key(name: str, scope: str, key: str) -> None:
    print(key)  # stdout: what a script reads
    err.print(f"key {name!r} ({scope}) created; it is shown only now, keep it somewhere safe", highlight=False)


@keys_app.command("list")
@handles_errors
def keys_list(as_json: JsonFlag = False) -> None:
    """List keys: name, scope, created, revoked (never a key or a hash)."""
    from flywheel.keys import open_keys

    keys = open_keys(_settings()).list()
    answer(as_json, {"keys": [k.model_dump(mode="json") for k in keys]}, lambda: _print_keys(keys))


def _print_keys(keys: list[KeyInfo]) -> None:
    if not keys:
        err.print("no keys yet; create one with `flywheel keys create NAME --scope ingest|read|admin`", highlight=False)
        return
    table = Table("name", "scope", "id", "created", "revoked")
    for k in keys:
        table.add_row(
            k.name,
            k.scope.value,
            k.id,
            f"{k.created:%Y-%m-%d %H:%M}",
            f"{k.revoked:%Y-%m-%d %H:%M}" if k.revoked else "",
        )
    Console().print(table)


@keys_app.command("revoke")
@handles_errors
def keys_revoke(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    as_json: JsonFlag = False,
) -> None:
    """Revoke a key: every server refuses it from its next request on."""
    from flywheel.keys import open_keys

    count = open_keys(_settings()).revoke(name)
    answer(as_json, {"name": name, "revoked": count}, lambda: err.print(f"key {name!r} revoked", highlight=False))
