"""The VM size catalogue: defaults, the TOML format, and the core's checks against it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybatch.core.commands import CreatePool, UpdatePool
from hybatch.core.effects import ProvisionNode
from hybatch.core.machine import BatchCore
from hybatch.schema import BatchPoolCreateOptions
from hybatch.vm_sizes import CatalogueError, default_catalogue, load_catalogue, parse_catalogue
from tests.unit.core.core_sim import SeqIds, Sim, pool_spec

SIZES_IN_TESTS = ("standard_a0", "STANDARD_A1", "standard_d2s_v3", "standard_d4s_v3",
                  "standard_d8s_v3", "standard_e64-16s_v3", "standard_hb120rs_v3")


def test_defaults_offer_the_sizes_clients_use() -> None:
    catalogue = default_catalogue()
    for name in SIZES_IN_TESTS:
        size = catalogue.get(name)
        assert size is not None and size.backend == "local", name
    assert catalogue.get("Standard_D4s_v3").cores == 4  # type: ignore[union-attr]
    dask = catalogue.get("dask_local")
    assert dask is not None and dask.backend == "dask" and dask.dask is not None
    assert dask.dask.cluster == "local" and dask.dask.managed
    assert catalogue.backend_of("nonesuch") == "local"


def test_toml_adds_sizes_and_images(tmp_path: Path) -> None:
    path = tmp_path / "sizes.toml"
    path.write_text('''
[sizes.Lab_Big]
backend = "dask"
scheduler = "tcp://10.0.0.1:8786"
cores = 8
memoryGiB = 32
gpus = 1
slots = 4
node_root = "/scratch/hb"

[sizes.hpc]
backend = "dask"
cluster = "slurm"
[sizes.hpc.slurm]
queue = "debug"
scheduler_host = "10.0.0.2"

[[images]]
nodeAgentSKUId = "batch.node.el 9"
publisher = "rockylinux"
''')
    catalogue = load_catalogue(path)
    lab = catalogue.get("lab_big")
    assert lab is not None and lab.dask is not None
    assert (lab.cores, lab.memory_gib, lab.gpus, lab.slots) == (8, 32.0, 1, 4)
    assert lab.dask.scheduler == "tcp://10.0.0.1:8786" and not lab.dask.managed
    assert lab.dask.node_root == "/scratch/hb"
    hpc = catalogue.get("HPC")
    assert hpc is not None and hpc.dask is not None
    assert hpc.dask.slurm_job_settings() == {"queue": "debug"}
    assert catalogue.get("standard_d2s_v3") is not None  # defaults kept
    assert [i["nodeAgentSKUId"] for i in catalogue.images] == ["batch.node.el 9"]
    assert catalogue.offer().node_agent_skus == frozenset({"batch.node.el 9"})


def test_replace_defaults() -> None:
    catalogue = parse_catalogue({"replace_defaults": True, "sizes": {"only": {"cores": 2}}})
    assert set(catalogue.sizes) == {"only"}


@pytest.mark.parametrize(("data", "fragment"), [
    ({"sizes": {"x": {"backend": "ray"}}}, "backend"),
    ({"sizes": {"x": {"backend": "dask"}}}, "either"),
    ({"sizes": {"x": {"backend": "dask", "cluster": "local", "scheduler": "tcp://a:1"}}},
     "either"),
    ({"sizes": {"x": {"backend": "dask", "cluster": "k8s"}}}, "cluster"),
    ({"sizes": {"x": {"scheduler": "tcp://a:1"}}}, "backend = 'dask'"),
    ({"sizes": {"x": {"backend": "dask", "cluster": "local", "slurm": {"queue": "q"}}}},
     "slurm"),
    ({"sizes": {"x": {"cores": 0}}}, "cores"),
    ({"sizes": {"x": {"slots": 300}}}, "slots"),
    ({"sizes": {"x": {"colour": "red"}}}, "unknown"),
    ({"flavours": {}}, "unknown"),
    ({"images": [{"publisher": "p"}]}, "nodeAgentSKUId"),
    ({"replace_defaults": True}, "no VM size"),
])
def test_bad_catalogues_are_refused(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(CatalogueError, match=fragment):
        parse_catalogue(data)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[sizes\n")
    with pytest.raises(CatalogueError):
        load_catalogue(tmp_path / "bad.toml")
    with pytest.raises(CatalogueError):
        load_catalogue(tmp_path / "missing.toml")


@pytest.fixture
def offered() -> Sim:
    catalogue = parse_catalogue({"sizes": {"dask_d4": {"backend": "dask", "cluster": "local",
                                                       "cores": 4, "slots": 3}}})
    return Sim(core=BatchCore(SeqIds(), catalogue.offer()))


def test_core_refuses_an_unknown_size_as_batch_does(offered: Sim) -> None:
    error = offered.fails(CreatePool(pool_spec("p", vmSize="standard_q9000")),
                          "InvalidPropertyValue")
    assert error.details["PropertyName"] == "vmSize"
    assert error.details["PropertyValue"] == "standard_q9000"
    offered.pool(vmSize="STANDARD_D2S_V3")  # any case
    offered.fails(UpdatePool("p", (("vmSize", "standard_q9000"),)), "InvalidPropertyValue")


def test_core_takes_default_slots_and_names_the_size(offered: Sim) -> None:
    spec = BatchPoolCreateOptions.model_validate({"id": "d", "vmSize": "dask_d4",
                                                  "targetDedicatedNodes": 1})
    pool = offered.send(CreatePool(spec))
    assert pool.task_slots_per_node == 3
    provision = [e for e in offered.effects if isinstance(e, ProvisionNode)]
    assert provision[-1].vm_size == "dask_d4" and provision[-1].slots == 3
    assert offered.pool("e", vmSize="dask_d4", taskSlotsPerNode=1).task_slots_per_node == 1


def test_core_checks_the_node_agent_sku(offered: Sim) -> None:
    image = {"imageReference": {"publisher": "canonical"}, "nodeAgentSKUId": "batch.node.win"}
    error = offered.fails(CreatePool(pool_spec("p", virtualMachineConfiguration=image)),
                          "InvalidPropertyValue")
    assert error.details["PropertyName"] == "nodeAgentSKUId"
    offered.pool(virtualMachineConfiguration={**image, "nodeAgentSKUId": "Batch.Node.Ubuntu 22.04"})


def test_without_a_catalogue_any_size_goes() -> None:
    sim = Sim()
    assert sim.pool(vmSize="anything").spec.vm_size == "anything"
