"""The VM size catalogue: which ``vmSize`` values a pool may name, what a node of each size
has, and which backend runs it.

Built-in defaults offer common Azure size names run as local nodes, plus ``dask_local`` (a
Dask worker of a cluster hybatch starts itself). A TOML file (setting ``vm_sizes``,
``HYBATCH_VM_SIZES`` or ``serve --vm-sizes``) adds sizes or replaces the defaults::

    replace_defaults = false          # true: only the sizes below are offered

    [sizes.dask_d4]
    backend = "dask"                  # "local" (default) or "dask"
    cores = 4
    memoryGiB = 16
    gpus = 0
    slots = 4                         # taskSlotsPerNode when a pool does not say
    lookahead = 8                     # rounds of slots offered ahead for short tasks
                                      # (default 8 for dask sizes, 1 for local ones)
    cluster = "local"                 # hybatch starts scheduler + workers (processes)

    [sizes.lab]
    backend = "dask"
    scheduler = "tcp://10.1.2.3:8786" # an existing cluster: nodes are its workers
    node_root = "/scratch/hybatch"    # where nodes live on the workers (default: the
                                      # worker's local directory)

    [sizes.hpc]
    backend = "dask"
    cluster = "slurm"                 # each node is one Slurm job running one worker
    [sizes.hpc.slurm]                 # dask-jobqueue SLURMCluster settings
    queue = "batch"
    walltime = "04:00:00"

    [[images]]                        # replaces the supported images when given
    nodeAgentSKUId = "batch.node.ubuntu 22.04"
    publisher = "canonical"
    offer = "0001-com-ubuntu-server-jammy"
    sku = "22_04-lts"

Names are case-insensitive (kept lower-cased). Imports: standard library, core.sizes.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from hybatch.core.sizes import Offer, SizeFacts

BACKENDS = ("local", "dask")
CLUSTERS = ("local", "slurm")
MANAGED_LOCAL = "local"
MANAGED_SLURM = "slurm"


class CatalogueError(ValueError):
    """The catalogue file is unreadable or describes a size wrongly."""


@dataclass(frozen=True, slots=True)
class DaskTarget:
    """Where the nodes of a Dask size come from: an external scheduler (nodes are the workers
    present), or a cluster hybatch manages (``local`` worker processes, ``slurm`` jobs)."""

    scheduler: str | None = None
    cluster: str | None = None
    slurm: Mapping[str, Any] = field(default_factory=dict)
    node_root: str | None = None

    @property
    def managed(self) -> bool:
        return self.scheduler is None

    def slurm_job_settings(self) -> dict[str, Any]:
        """dask-jobqueue SLURMJob keyword arguments (``scheduler_host`` is hybatch's own: the
        address the managed scheduler listens on, reachable from the compute nodes)."""
        return {k: v for k, v in self.slurm.items() if k != "scheduler_host"}


@dataclass(frozen=True, slots=True)
class VmSize:
    name: str
    backend: str = "local"
    cores: int = 1
    memory_gib: float = 1.0
    gpus: int = 0
    slots: int = 1
    dask: DaskTarget | None = None
    lookahead: int = 1
    """Rounds of slots offered ahead to a node for short tasks: deeper for Dask nodes, whose
    exits and offers cross the scheduler (measured in bench/README.md)."""


DASK_LOOKAHEAD = 8


DEFAULT_IMAGES: tuple[Mapping[str, object], ...] = (
    MappingProxyType({
        "nodeAgentSKUId": "batch.node.ubuntu 22.04",
        "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                           "sku": "22_04-lts", "version": "latest"},
        "osType": "linux",
        "capabilities": [],
        "verificationType": "verified",
    }),
    MappingProxyType({
        "nodeAgentSKUId": "batch.node.ubuntu 24.04",
        "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                           "sku": "server", "version": "latest"},
        "osType": "linux",
        "capabilities": [],
        "verificationType": "verified",
    }),
)


def _default_sizes() -> dict[str, VmSize]:
    """Common Azure sizes (name, vCPUs, GiB), run as local nodes."""
    table: list[tuple[str, int, float, int]] = [
        ("standard_a0", 1, 0.75, 0), ("standard_a1", 1, 1.75, 0), ("standard_a2", 2, 3.5, 0),
        ("standard_a3", 4, 7, 0), ("standard_a4", 8, 14, 0),
        ("basic_a0", 1, 0.75, 0), ("basic_a1", 1, 1.75, 0), ("basic_a2", 2, 3.5, 0),
        ("standard_a1_v2", 1, 2, 0), ("standard_a2_v2", 2, 4, 0), ("standard_a4_v2", 4, 8, 0),
        ("standard_a8_v2", 8, 16, 0),
        ("standard_hb120rs_v3", 120, 448, 0), ("standard_hc44rs", 44, 352, 0),
        ("standard_nc6s_v3", 6, 112, 1), ("standard_nc12s_v3", 12, 224, 2),
        ("standard_nc24s_v3", 24, 448, 4),
        ("standard_nc4as_t4_v3", 4, 28, 1), ("standard_nc8as_t4_v3", 8, 56, 1),
    ]
    for cores in (2, 4, 8, 16, 32, 48, 64):
        for family, per_core in (("d", 4), ("e", 8)):
            for suffix in ("s_v3", "_v3", "s_v4", "_v4", "s_v5", "_v5", "as_v5", "ds_v5"):
                table.append((f"standard_{family}{cores}{suffix}", cores, cores * per_core, 0))
        for suffix in ("s_v2", "_v2"):
            table.append((f"standard_f{cores}{suffix}", cores, cores * 2, 0))
    table.append(("standard_f72s_v2", 72, 144, 0))
    table.append(("standard_e64-16s_v3", 16, 432, 0))  # constrained: 16 active cores
    table.append(("standard_e64-32s_v3", 32, 432, 0))
    sizes = {name: VmSize(name=name, cores=cores, memory_gib=gib, gpus=gpus)
             for name, cores, gib, gpus in table}
    sizes["dask_local"] = VmSize(name="dask_local", backend="dask", cores=2, memory_gib=4,
                                 slots=2, dask=DaskTarget(cluster=MANAGED_LOCAL),
                                 lookahead=DASK_LOOKAHEAD)
    return sizes


@dataclass(frozen=True, slots=True)
class Catalogue:
    sizes: Mapping[str, VmSize]
    images: tuple[Mapping[str, object], ...] = DEFAULT_IMAGES

    def get(self, name: str) -> VmSize | None:
        return self.sizes.get(name.strip().lower())

    def backend_of(self, name: str) -> str:
        """The backend running nodes of this size (``local`` for an unknown one)."""
        size = self.get(name)
        return size.backend if size is not None else "local"

    def offer(self) -> Offer:
        """The data the core validates pools against."""
        return Offer(
            sizes={name: SizeFacts(cores=s.cores, slots=s.slots, lookahead=s.lookahead)
                   for name, s in self.sizes.items()},
            node_agent_skus=frozenset(str(i["nodeAgentSKUId"]).lower() for i in self.images),
        )

    def uses(self, backend: str) -> bool:
        return any(size.backend == backend for size in self.sizes.values())


def default_catalogue() -> Catalogue:
    return Catalogue(sizes=MappingProxyType(_default_sizes()))


def load_catalogue(path: Path | None) -> Catalogue:
    """The defaults, extended (or replaced) by the TOML file at ``path``."""
    if path is None:
        return default_catalogue()
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"cannot read the VM size catalogue {path}: {exc}") from exc
    return parse_catalogue(data)


def parse_catalogue(data: Mapping[str, Any]) -> Catalogue:
    unknown = set(data) - {"replace_defaults", "sizes", "images"}
    if unknown:
        raise CatalogueError(f"unknown catalogue keys: {sorted(unknown)}")
    sizes = {} if data.get("replace_defaults", False) else _default_sizes()
    raw_sizes = data.get("sizes", {})
    if not isinstance(raw_sizes, Mapping):
        raise CatalogueError("'sizes' must be a table of tables")
    for name, entry in raw_sizes.items():
        size = _parse_size(str(name), entry)
        sizes[size.name] = size
    images = DEFAULT_IMAGES
    if "images" in data:
        images = tuple(_parse_image(item) for item in data["images"])
    if not sizes:
        raise CatalogueError("the catalogue offers no VM size")
    return Catalogue(sizes=MappingProxyType(sizes), images=images)


_SIZE_KEYS = {"backend", "cores", "memoryGiB", "gpus", "slots", "scheduler", "cluster",
              "slurm", "node_root", "lookahead"}


def _parse_size(name: str, entry: object) -> VmSize:
    if not isinstance(entry, Mapping):
        raise CatalogueError(f"size {name!r} must be a table")
    unknown = set(entry) - _SIZE_KEYS
    if unknown:
        raise CatalogueError(f"size {name!r}: unknown keys {sorted(unknown)}")
    key = name.strip().lower()
    if not key:
        raise CatalogueError("a size needs a name")
    backend = str(entry.get("backend", "local"))
    if backend not in BACKENDS:
        raise CatalogueError(f"size {name!r}: backend must be one of {BACKENDS}")
    cores = _positive_int(name, entry, "cores", 1)
    slots = _positive_int(name, entry, "slots", 1)
    gpus = int(entry.get("gpus", 0))
    memory = float(entry.get("memoryGiB", cores * 4))
    if slots > 256 or gpus < 0 or memory <= 0:
        raise CatalogueError(f"size {name!r}: slots 1..256, gpus >= 0, memoryGiB > 0")
    dask: DaskTarget | None = None
    dask_keys = {"scheduler", "cluster", "slurm", "node_root"} & set(entry)
    if backend == "dask":
        scheduler = entry.get("scheduler")
        cluster = entry.get("cluster")
        if (scheduler is None) == (cluster is None):
            raise CatalogueError(f"size {name!r}: a dask size names either 'scheduler' "
                                 f"(an existing cluster) or 'cluster' ({CLUSTERS})")
        if cluster is not None and cluster not in CLUSTERS:
            raise CatalogueError(f"size {name!r}: cluster must be one of {CLUSTERS}")
        slurm = entry.get("slurm", {})
        if not isinstance(slurm, Mapping) or (slurm and cluster != MANAGED_SLURM):
            raise CatalogueError(f"size {name!r}: 'slurm' settings go with cluster = 'slurm'")
        node_root = entry.get("node_root")
        dask = DaskTarget(scheduler=str(scheduler) if scheduler is not None else None,
                          cluster=str(cluster) if cluster is not None else None,
                          slurm=MappingProxyType(dict(slurm)),
                          node_root=str(node_root) if node_root is not None else None)
    elif dask_keys:
        raise CatalogueError(f"size {name!r}: {sorted(dask_keys)} need backend = 'dask'")
    lookahead = _positive_int(name, entry, "lookahead",
                              DASK_LOOKAHEAD if backend == "dask" else 1)
    if lookahead > 64:
        raise CatalogueError(f"size {name!r}: lookahead 1..64")
    return VmSize(name=key, backend=backend, cores=cores, memory_gib=memory, gpus=gpus,
                  slots=slots, dask=dask, lookahead=lookahead)


def _positive_int(name: str, entry: Mapping[str, Any], key: str, default: int) -> int:
    value = entry.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise CatalogueError(f"size {name!r}: {key} must be a positive integer")
    return value


def _parse_image(item: object) -> Mapping[str, object]:
    if not isinstance(item, Mapping) or not item.get("nodeAgentSKUId"):
        raise CatalogueError("each image needs a nodeAgentSKUId")
    return MappingProxyType({
        "nodeAgentSKUId": str(item["nodeAgentSKUId"]),
        "imageReference": {"publisher": str(item.get("publisher", "")),
                           "offer": str(item.get("offer", "")),
                           "sku": str(item.get("sku", "")),
                           "version": str(item.get("version", "latest"))},
        "osType": str(item.get("osType", "linux")),
        "capabilities": list(item.get("capabilities", [])),
        "verificationType": str(item.get("verificationType", "verified")),
    })
