"""The ``hybatch`` command line: ``serve`` runs the service, ``quickstart`` the main job."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(help="hybatch: Azure Batch, self-hosted.", no_args_is_help=True,
                  add_completion=False)
console = Console()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8642,
    data_dir: Annotated[Path, typer.Option(help="Where state, node directories and the "
                                           "account key live.")] = Path(".hybatch"),
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL (default: SQLite in the data directory).")] = None,
    node_root: Annotated[Path | None, typer.Option(
        help="Directory for local nodes' files (default: <data-dir>/nodes).")] = None,
    vm_sizes: Annotated[Path | None, typer.Option(
        help="TOML VM size catalogue (sizes, their backends and Dask clusters).")] = None,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "warning",
) -> None:
    """Run the Batch service until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    import uvicorn

    from hybatch.composition import build_server
    from hybatch.settings import Settings

    logging.basicConfig(level=log_level.upper())

    extra: dict[str, Any] = {"vm_sizes": vm_sizes.absolute()} if vm_sizes else {}
    settings = Settings(host=host, port=port, data_dir=data_dir.absolute(),
                        database_url=database_url,
                        node_root=node_root.absolute() if node_root else None,
                        **extra)
    server = build_server(settings)
    console.print("[bold]hybatch[/bold] serving the Azure Batch API")
    for label, value in (("endpoint", settings.resolved_public_url()),
                         ("account", server.account.name), ("key", server.account.key),
                         ("data", str(settings.data_dir))):
        console.print(f"  {label + ':':9} {value}", soft_wrap=True, highlight=False)
    # uvicorn stops gracefully on SIGINT/SIGTERM and then re-raises the signal with the
    # handlers it found; a no-op handler lets a clean stop exit with status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(server.app, host=host, port=port, log_level=log_level, access_log=False,
                lifespan="on")


@app.command()
def quickstart(
    data_dir: Annotated[Path, typer.Option(help="Data directory of the embedded service.")]
    = Path(".hybatch-quickstart"),
    points: Annotated[int, typer.Option(help="Parameter values in the sweep.")] = 24,
    nodes: Annotated[int, typer.Option(help="Nodes in the pool.")] = 2,
    slots: Annotated[int, typer.Option(help="Task slots per node.")] = 2,
) -> None:
    """Start an embedded service and run a real parameter sweep plus an aggregation task."""
    from hybatch.quickstart.run import run_quickstart

    raise typer.Exit(run_quickstart(console, data_dir.absolute(), points, nodes, slots))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
