"""Server settings: the only place configuration and the environment are read.

Values come from keyword arguments, then ``HYBATCH_*`` environment variables, then defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HYBATCH_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8642
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / ".hybatch")
    node_root: Path | None = None
    """Where local nodes keep their directories (the Batch node's temporary disk); default
    ``<data_dir>/nodes``. A tmpfs here makes task set-up much cheaper on slow disks."""
    node_agent: bool = True
    """Run local nodes in a detached node-agent process (its own interpreter and GIL; it
    outlives a server crash and the restarted server re-attaches to it) rather than in the
    service process."""
    agent_outlives_stop: bool = False
    """On a clean stop, leave the node agent and its running tasks up for the next start to
    re-attach to (instead of stopping it, which requeues those tasks on the next start)."""
    database_url: str | None = None
    """SQLAlchemy URL; default is SQLite (WAL) in the data directory."""
    account_name: str | None = None
    account_key: str | None = None
    public_url: str | None = None
    """Base URL put in resource URLs and nextLinks; default http://host:port."""
    tick_seconds: float = 1.0
    vm_sizes: Path | None = None
    """A TOML VM size catalogue extending (or replacing) the built-in sizes; see
    ``hybatch.vm_sizes``. Sizes backed by Dask run their nodes as Dask workers."""
    allow_anonymous: bool = False
    """Accept requests without credentials (local development only)."""

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'hybatch.db'}"

    def resolved_node_root(self) -> Path:
        return self.node_root or self.data_dir / "nodes"

    def resolved_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
