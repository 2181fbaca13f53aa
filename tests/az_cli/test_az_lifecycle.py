"""`az batch` (the Azure CLI, unmodified) drives a whole lifecycle against a real ``hybatch serve``.

Two CLI generations run the same scenario, each from its own virtualenv made (once, then cached)
by ``scripts/az_venv.sh``:

* ``latest``: the newest azure-cli on the package index (2.91.0 when written). It wraps the
  azure-core based azure-batch 15.0.0b1, which still sends api-version 2024-02-01.19.0 and sends
  integers as JSON strings (``{"targetDedicatedNodes": "2"}``).
* ``msrest``: azure-cli 2.68.0, the last release on the msrest-based azure-batch 14.2.0 (the
  14.x wire format of reference §9.1: ``timeout=30`` on most calls, If-Match sent as given,
  ``charset=utf-8`` in the Content-Type).

Every command is its own ``az`` process with ``--output json`` and the endpoint, account and key
as flags (a few use AZURE_BATCH_ENDPOINT / AZURE_BATCH_ACCOUNT / AZURE_BATCH_ACCESS_KEY
instead). ``az`` reaches the server through a WireTap, whose transcript (the exact request and
response) a failure message quotes, and everything else through an OutboundTrap, which must see
nothing: the CLI works offline apart from our server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.az_cli.netutil import OutboundTrap, WireTap
from tests.support.server import ACCOUNT, KEY, ServerProcess, wait_for

pytestmark = [pytest.mark.az_cli, pytest.mark.timeout(900)]

REPO_ROOT = Path(__file__).resolve().parents[2]
AZ_VENV_SCRIPT = REPO_ROOT / "scripts" / "az_venv.sh"
VENV_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 120
STATE_TIMEOUT_S = 60.0
POLL_S = 0.1  # between az processes, each of which takes about a second anyway

POOL = "az-pool"
JOB = "az-job"
VM_SIZE = "standard_d2s_v3"
IMAGE = "canonical:0001-com-ubuntu-server-jammy:22_04-lts"
NODE_AGENT_SKU = "batch.node.ubuntu 22.04"
SLOTS_PER_NODE = 2

HELLO_COMMAND = "/bin/sh -c 'echo \"hello from $AZ_BATCH_TASK_ID: $GREETING\"; echo to-stderr >&2'"
WRITER_COMMAND = (
    "/bin/sh -c 'mkdir -p out && echo \"$AZ_BATCH_JOB_ID/$AZ_BATCH_TASK_ID\" > out/result.txt'"
)
FAIL_EXIT_CODE = 3
FAIL_COMMAND = f"/bin/sh -c 'echo failing; exit {FAIL_EXIT_CODE}'"
SINGLE_COMMAND = "/bin/sh -c 'echo \"single $FROM_JSON\"'"
FIRST_TASKS = {"hello", "writer", "fails", "single"}
COUNT_NAMES = ("active", "running", "completed", "succeeded", "failed")

# Offline settings for every az process (the config dir is per test, set separately).
AZ_OFFLINE_ENV = {
    "AZURE_CORE_COLLECT_TELEMETRY": "no",
    "AZURE_CORE_ONLY_SHOW_ERRORS": "yes",
    "AZURE_CORE_SURVEY_MESSAGE": "no",
    "AZURE_CORE_NO_COLOR": "yes",
    "AZURE_CORE_ERROR_RECOMMENDATION": "off",
    "AZURE_CORE_DISABLE_CONFIRM_PROMPT": "yes",
    "AZURE_EXTENSION_USE_DYNAMIC_INSTALL": "no",
}


@dataclass(frozen=True)
class Generation:
    name: str
    venv_dir: str  # relative to the repository root
    spec: str | None  # AZ_VENV_SPEC for the script; None: the newest azure-cli
    batch_sdk: str | None  # the azure-batch version this CLI must wrap; None: not pinned


GENERATIONS = (
    Generation("latest", ".venv-az", None, None),
    Generation("msrest", ".venv-az-2.68", "azure-cli==2.68.0", "14.2.0"),
)


# ------------------------------------------------------------------------------------------
# installing and running az

_VERSIONS_PROBE = """
import importlib.metadata as m, json
names = ("azure-cli", "azure-cli-core", "azure-cli-telemetry", "azure-batch")
print(json.dumps({name: m.version(name) for name in names}))
"""


@dataclass(frozen=True)
class AzInstall:
    exe: Path
    versions: dict[str, str]  # distribution name -> version, as installed in the venv


def seed_offline_config(config_dir: Path, versions: dict[str, str]) -> None:
    """Make a fresh AZURE_CONFIG_DIR that az starts from without going online.

    On its first run in a config dir az looks the newest release up on
    azcliprod.blob.core.windows.net (``handle_version_update``) and caches the answer in
    versionCheck.json for a day; a cache already naming the installed versions skips that.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    components = {
        "azure-cli": "azure-cli",
        "core": "azure-cli-core",
        "telemetry": "azure-cli-telemetry",
    }
    cache = {
        "versions": {
            key: {"local": versions[dist], "pypi": versions[dist]}
            for key, dist in components.items()
        },
        "update_time": datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    (config_dir / "versionCheck.json").write_text(json.dumps(cache))


def _base_env() -> dict[str, str]:
    """The caller's environment minus what would leak into the az venv or configure az."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    for name in list(env):
        if name.startswith("AZURE_"):
            env.pop(name)
    return env


def _run_venv_script(generation: Generation) -> subprocess.CompletedProcess[str]:
    env = _base_env()
    if generation.spec:
        env["AZ_VENV_SPEC"] = generation.spec
    return subprocess.run(
        ["bash", str(AZ_VENV_SCRIPT), str(REPO_ROOT / generation.venv_dir)],
        capture_output=True,
        text=True,
        timeout=VENV_TIMEOUT_S,
        env=env,
        check=False,
    )


@dataclass
class AzResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wire: str

    def describe(self) -> str:
        shown = [a if a != KEY else "<key>" for a in self.argv]
        return (
            f"$ {shlex.join(shown)}\nexit status {self.returncode}\n"
            f"--- stderr\n{self.stderr[-4000:]}\n--- stdout\n{self.stdout[-3000:]}\n"
            f"--- wire (az <-> server, verbatim)\n{self.wire or '(nothing sent)'}"
        )


class Az:
    """Runs ``az`` from one virtualenv against one server, one process per command."""

    def __init__(self, install: AzInstall, tap: WireTap, trap: OutboundTrap, home: Path) -> None:
        self.exe = install.exe
        self.tap = tap
        self.trap = trap
        self.home = home
        self.config_dir = home / "azure-config"
        seed_offline_config(self.config_dir, install.versions)
        self.outbound: list[str] = []  # "<command>: <request line>" for each trapped request

    def env(self, creds_in_env: bool = False, key: str = KEY) -> dict[str, str]:
        env = {
            name: value for name, value in _base_env().items() if not name.lower().endswith("proxy")
        }
        env.update(AZ_OFFLINE_ENV)
        env["AZURE_CONFIG_DIR"] = str(self.config_dir)
        env.update(self.trap.proxy_env())
        if creds_in_env:
            env["AZURE_BATCH_ENDPOINT"] = self.tap.endpoint
            env["AZURE_BATCH_ACCOUNT"] = ACCOUNT
            env["AZURE_BATCH_ACCESS_KEY"] = key
        return env

    def run(self, *args: str, creds_in_env: bool = False, key: str = KEY) -> AzResult:
        argv = [str(self.exe), *args, "--output", "json"]
        if not creds_in_env:
            argv += ["--account-endpoint", self.tap.endpoint, "--account-name", ACCOUNT]
            argv += ["--account-key", key]
        mark = self.tap.mark()
        trapped = len(self.trap.attempts)
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            env=self.env(creds_in_env, key),
            cwd=self.home,
            check=False,
        )
        command = " ".join(args[:3])
        self.outbound += [f"az {command}: {line}" for line in self.trap.attempts[trapped:]]
        return AzResult(argv, proc.returncode, proc.stdout, proc.stderr, self.tap.since(mark))

    def ok(self, *args: str, creds_in_env: bool = False) -> Any:
        """Run a command that must succeed; its parsed JSON output (None when it printed none)."""
        result = self.run(*args, creds_in_env=creds_in_env)
        assert result.returncode == 0, f"az command failed:\n{result.describe()}"
        text = result.stdout.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"az printed no JSON ({exc}):\n{result.describe()}") from None

    def fails(self, *args: str, expect: str, key: str = KEY) -> AzResult:
        """Run a command that must fail with ``expect`` (case-insensitive) in its error output."""
        result = self.run(*args, key=key)
        assert result.returncode != 0, f"az command should have failed:\n{result.describe()}"
        assert expect.lower() in result.stderr.lower(), (
            f"expected {expect!r} in the error:\n{result.describe()}"
        )
        return result


def _is_absent(az: Az, kind: str, id_: str) -> bool:
    result = az.run("batch", kind, "show", f"--{kind}-id", id_)
    if result.returncode == 0:
        return False
    assert f"{kind} does not exist" in result.stderr.lower(), (
        f"`{kind} show` failed other than with {kind.capitalize()}NotFound:\n{result.describe()}"
    )
    return True


# ------------------------------------------------------------------------------------------
# value helpers: the two CLI generations print durations differently


_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_PY_TIMEDELTA = re.compile(r"^(?:(?P<d>\d+) days?, )?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d(?:\.\d+)?)$")


def seconds(value: Any) -> float:
    """Seconds in an ISO 8601 duration (latest az) or a Python timedelta string (msrest az)."""
    assert isinstance(value, str), f"not a duration: {value!r}"
    match = _ISO_DURATION.match(value) or _PY_TIMEDELTA.match(value)
    assert match, f"not a duration: {value!r}"
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def by_id(items: Any) -> dict[str, dict[str, Any]]:
    assert isinstance(items, list), f"expected a JSON list, got {items!r}"
    return {item["id"]: item for item in items}


def counts(task_counts: dict[str, Any], key: str) -> dict[str, int]:
    section = task_counts[key]
    return {name: section[name] for name in COUNT_NAMES}


# ------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module", params=GENERATIONS, ids=lambda g: g.name)
def generation(request: pytest.FixtureRequest) -> Generation:
    gen: Generation = request.param
    return gen


@pytest.fixture(scope="module")
def install(generation: Generation) -> AzInstall:
    """The CLI virtualenv (built on first use by scripts/az_venv.sh, then reused)."""
    result = _run_venv_script(generation)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{AZ_VENV_SCRIPT.name} failed:\n{output[-6000:]}"
    exe = Path(result.stdout.strip().splitlines()[-1])
    assert exe.is_file() and os.access(exe, os.X_OK), f"no az at {exe}:\n{output[-3000:]}"
    probe = subprocess.run(
        [str(exe.with_name("python")), "-c", _VERSIONS_PROBE],
        capture_output=True,
        text=True,
        env=_base_env(),
        timeout=60,
        check=True,
    )
    return AzInstall(exe, json.loads(probe.stdout))


@pytest.fixture
def trap() -> Iterator[OutboundTrap]:
    trap = OutboundTrap().start()
    yield trap
    trap.close()


@pytest.fixture
def az(install: AzInstall, trap: OutboundTrap, tmp_path: Path) -> Iterator[Az]:
    server = ServerProcess(tmp_path / "data").start()
    tap = WireTap(server.port).start()
    try:
        yield Az(install, tap, trap, tmp_path)
    finally:
        tap.close()
        server.stop()


# ------------------------------------------------------------------------------------------
# tests


def test_az_venv_script_is_cached(generation: Generation, install: AzInstall) -> None:
    """A second run of the script finds the CLI in place and installs nothing."""
    result = _run_venv_script(generation)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to do" in result.stdout, result.stdout
    assert result.stdout.strip().splitlines()[-1] == str(install.exe)
    if generation.spec:
        assert generation.spec == f"azure-cli=={install.versions['azure-cli']}"
    if generation.batch_sdk:
        assert install.versions["azure-batch"] == generation.batch_sdk


def test_outbound_trap_catches_non_local_requests(az: Az) -> None:
    """The proxy settings az runs under really send a non-local request to the trap (a control
    for the lifecycle's "az reached no one" assertion)."""
    python = az.exe.with_name("python")
    code = (
        "import requests\n"
        "try:\n"
        "    requests.get('https://azcliprod.blob.core.windows.net/cli/azure-cli-core/setup.py',"
        " timeout=10)\n"
        "except requests.RequestException as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    result = subprocess.run(
        [str(python), "-c", code],
        capture_output=True,
        text=True,
        env=az.env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ProxyError", result.stdout + result.stderr
    assert [a.rsplit(" ", 1)[0] for a in az.trap.attempts] == [
        "CONNECT azcliprod.blob.core.windows.net:443"
    ]


def test_az_batch_lifecycle(az: Az, tmp_path: Path) -> None:
    # Credentials from the environment work as well as flags; a fresh server has no pools.
    assert az.ok("batch", "pool", "list", creds_in_env=True) == []
    az.fails("batch", "pool", "list", key="d3Jvbmcta2V5LXdyb25nLWtleQ==", expect="signature")

    node_id = _pool_create_show_list(az)
    _job_create_show_list(az)
    _tasks_create_run_inspect(az, tmp_path, node_id)
    _task_files_download(az, tmp_path)
    _pool_resize(az)
    _job_and_pool_delete(az)

    assert az.outbound == [], f"az tried to reach beyond our server: {az.outbound}"


def _pool_create_show_list(az: Az) -> str:
    created = az.ok(
        "batch", "pool", "create",
        "--id", POOL,
        "--vm-size", VM_SIZE,
        "--target-dedicated-nodes", "1",
        "--task-slots-per-node", str(SLOTS_PER_NODE),
        "--image", IMAGE,
        "--node-agent-sku-id", NODE_AGENT_SKU,
        "--metadata", "owner=az-cli",
    )  # fmt: skip
    assert created is None  # pool create prints nothing on success
    az.fails(
        "batch", "pool", "create", "--id", POOL, "--vm-size", VM_SIZE,
        "--target-dedicated-nodes", "1", "--image", IMAGE, "--node-agent-sku-id", NODE_AGENT_SKU,
        expect="already exists",
    )  # fmt: skip

    def steady() -> dict[str, Any] | None:
        pool = az.ok("batch", "pool", "show", "--pool-id", POOL)
        done = pool["allocationState"] == "steady" and pool["currentDedicatedNodes"] == 1
        return pool if done else None

    pool = wait_for(steady, timeout=STATE_TIMEOUT_S, interval=POLL_S, what="pool steady at 1")
    assert pool["id"] == POOL
    assert pool["state"] == "active"
    assert pool["vmSize"].lower() == VM_SIZE
    assert pool["taskSlotsPerNode"] == SLOTS_PER_NODE
    assert pool["targetDedicatedNodes"] == 1
    assert pool["enableAutoScale"] is False
    assert seconds(pool["resizeTimeout"]) == 15 * 60  # the default
    assert pool["metadata"] == [{"name": "owner", "value": "az-cli"}]
    vm_config = pool["virtualMachineConfiguration"]
    publisher, offer, sku = IMAGE.split(":")
    image = vm_config["imageReference"]
    assert (image["publisher"], image["offer"], image["sku"]) == (publisher, offer, sku)
    assert vm_config["nodeAgentSkuId"] == NODE_AGENT_SKU
    assert pool["url"].endswith(f"/pools/{POOL}")

    pools = az.ok("batch", "pool", "list")
    assert list(by_id(pools)) == [POOL]
    assert by_id(pools)[POOL]["taskSlotsPerNode"] == SLOTS_PER_NODE
    selected = az.ok("batch", "pool", "list", "--filter", f"id eq '{POOL}'", "--select", "id,state")
    assert [(p["id"], p["state"]) for p in selected] == [(POOL, "active")]
    assert selected[0].get("vmSize") is None  # $select honoured
    assert az.ok("batch", "pool", "list", "--filter", "id eq 'no-such-pool'") == []
    az.fails("batch", "pool", "show", "--pool-id", "no-such-pool", expect="pool does not exist")

    nodes = _wait_idle_nodes(az, 1)
    node = nodes[0]
    assert node["isDedicated"] is True
    assert node["vmSize"].lower() == VM_SIZE
    assert node["schedulingState"] == "enabled"
    assert node["runningTasksCount"] == 0
    assert node["totalTasksRun"] == 0
    assert node["url"].endswith(f"/pools/{POOL}/nodes/{node['id']}")
    idle = az.ok("batch", "node", "list", "--pool-id", POOL, "--filter", "state eq 'idle'")
    assert [n["id"] for n in idle] == [node["id"]]
    node_id: str = node["id"]
    return node_id


def _wait_idle_nodes(az: Az, count: int) -> list[dict[str, Any]]:
    def idle() -> list[dict[str, Any]] | None:
        nodes: list[dict[str, Any]] = az.ok("batch", "node", "list", "--pool-id", POOL)
        ok = len(nodes) == count and all(n["state"] == "idle" for n in nodes)
        return nodes if ok else None

    return wait_for(idle, timeout=STATE_TIMEOUT_S, interval=POLL_S, what=f"{count} idle nodes")


def _job_create_show_list(az: Az) -> None:
    created = az.ok(
        "batch", "job", "create",
        "--id", JOB,
        "--pool-id", POOL,
        "--priority", "10",
        "--metadata", "purpose=lifecycle",
    )  # fmt: skip
    assert created is None
    az.fails("batch", "job", "create", "--id", JOB, "--pool-id", POOL, expect="already exists")

    job = az.ok("batch", "job", "show", "--job-id", JOB)
    assert job["id"] == JOB
    assert job["state"] == "active"
    assert job["poolInfo"]["poolId"] == POOL
    assert job["priority"] == 10
    assert job["metadata"] == [{"name": "purpose", "value": "lifecycle"}]
    assert job["maxParallelTasks"] == -1  # the Batch default; neither az sends it
    assert job["onAllTasksComplete"] == "noaction"
    assert job["executionInfo"]["poolId"] == POOL

    assert list(by_id(az.ok("batch", "job", "list"))) == [JOB]
    active = az.ok("batch", "job", "list", "--filter", "state eq 'active'", "--select", "id,state")
    assert [(j["id"], j["state"]) for j in active] == [(JOB, "active")]
    az.fails("batch", "job", "show", "--job-id", "no-such-job", expect="job does not exist")


def _task_states(az: Az) -> dict[str, dict[str, Any]]:
    return by_id(az.ok("batch", "task", "list", "--job-id", JOB))


def _wait_tasks(az: Az, ids: set[str], state: str) -> dict[str, dict[str, Any]]:
    def reached() -> dict[str, dict[str, Any]] | None:
        tasks = _task_states(az)
        ok = ids <= set(tasks) and all(tasks[i]["state"] == state for i in ids)
        return tasks if ok else None

    return wait_for(reached, timeout=STATE_TIMEOUT_S, interval=POLL_S, what=f"{ids} {state}")


def _task_counts(az: Az) -> dict[str, Any]:
    result: dict[str, Any] = az.ok("batch", "job", "task-counts", "show", "--job-id", JOB)
    return result


def _tasks_create_run_inspect(az: Az, tmp_path: Path, node_id: str) -> None:
    # One task from flags: az prints the created task.
    hello = az.ok(
        "batch", "task", "create",
        "--job-id", JOB,
        "--task-id", "hello",
        "--command-line", HELLO_COMMAND,
        "--environment-settings", "GREETING=hi-there",
    )  # fmt: skip
    assert hello["id"] == "hello"
    assert hello["commandLine"] == HELLO_COMMAND
    assert hello["environmentSettings"] == [{"name": "GREETING", "value": "hi-there"}]
    assert hello["url"].endswith(f"/jobs/{JOB}/tasks/hello")

    # A list of tasks from a JSON file: one add-collection call; az prints the per-task results.
    tasks_file = tmp_path / "tasks.json"
    tasks_file.write_text(
        json.dumps(
            [
                {"id": "writer", "commandLine": WRITER_COMMAND},
                {
                    "id": "fails",
                    "commandLine": FAIL_COMMAND,
                    "constraints": {"maxTaskRetryCount": 1},
                },
            ]
        )
    )
    added = az.ok("batch", "task", "create", "--job-id", JOB, "--json-file", str(tasks_file))
    assert sorted((r["taskId"], r["status"]) for r in added) == [
        ("fails", "success"),
        ("writer", "success"),
    ]
    for item in added:
        assert item["location"].endswith(f"/jobs/{JOB}/tasks/{item['taskId']}"), item
        assert item["eTag"], item

    # A single task object from a JSON file.
    single_file = tmp_path / "single.json"
    single_file.write_text(
        json.dumps(
            {
                "id": "single",
                "commandLine": SINGLE_COMMAND,
                "environmentSettings": [{"name": "FROM_JSON", "value": "json-file"}],
                "constraints": {"maxWallClockTime": "PT5M", "retentionTime": "P1D"},
            }
        )
    )
    single = az.ok("batch", "task", "create", "--job-id", JOB, "--json-file", str(single_file))
    assert single["id"] == "single"
    assert single["environmentSettings"] == [{"name": "FROM_JSON", "value": "json-file"}]

    # Duplicates: the server answers TaskExists per task (collection) or as an error (single).
    again = az.ok("batch", "task", "create", "--job-id", JOB, "--json-file", str(tasks_file))
    assert sorted((r["taskId"], r["status"], r["error"]["code"]) for r in again) == [
        ("fails", "clienterror", "TaskExists"),
        ("writer", "clienterror", "TaskExists"),
    ]
    az.fails(
        "batch", "task", "create", "--job-id", JOB, "--task-id", "hello",
        "--command-line", "/bin/true", expect="already exists",
    )  # fmt: skip

    tasks = _wait_tasks(az, FIRST_TASKS, "completed")
    assert set(tasks) == FIRST_TASKS
    exit_codes = {tid: t["executionInfo"]["exitCode"] for tid, t in tasks.items()}
    assert exit_codes == {"hello": 0, "writer": 0, "single": 0, "fails": FAIL_EXIT_CODE}
    results = {tid: t["executionInfo"]["result"] for tid, t in tasks.items()}
    assert results == {"hello": "success", "writer": "success", "single": "success",
                       "fails": "failure"}  # fmt: skip

    failed = az.ok("batch", "task", "show", "--job-id", JOB, "--task-id", "fails")
    info = failed["executionInfo"]
    assert info["exitCode"] == FAIL_EXIT_CODE
    assert info["retryCount"] == 1  # maxTaskRetryCount 1: ran twice
    assert info["failureInfo"]["category"] == "usererror"
    assert info["failureInfo"]["code"] == "FailureExitCode"
    assert failed["constraints"]["maxTaskRetryCount"] == 1

    shown = az.ok("batch", "task", "show", "--job-id", JOB, "--task-id", "hello")
    assert shown["state"] == "completed"
    assert shown["executionInfo"]["retryCount"] == 0
    assert shown["nodeInfo"]["poolId"] == POOL
    assert shown["nodeInfo"]["nodeId"] == node_id
    single = az.ok("batch", "task", "show", "--job-id", JOB, "--task-id", "single")
    assert seconds(single["constraints"]["maxWallClockTime"]) == 5 * 60
    assert seconds(single["constraints"]["retentionTime"]) == 24 * 3600
    az.fails(
        "batch", "task", "show", "--job-id", JOB, "--task-id", "no-such-task",
        expect="task does not exist",
    )  # fmt: skip

    done = _task_counts(az)
    expected = {"active": 0, "running": 0, "completed": 4, "succeeded": 3, "failed": 1}
    assert counts(done, "taskCounts") == expected
    assert counts(done, "taskSlotCounts") == expected  # one slot per task

    # A task held running until the test lets it go: running state, counts and node view.
    release = tmp_path / "release-gate"
    assert re.fullmatch(r"[\w/.-]+", str(release)), f"path needs quoting: {release}"
    gate_command = (
        f"/bin/sh -c 'i=0; while [ ! -e {release} ] && [ $i -lt 1200 ]; do sleep 0.05; "
        f"i=$((i+1)); done; if [ -e {release} ]; then echo released; else exit 9; fi'"
    )
    gate = az.ok("batch", "task", "create", "--job-id", JOB, "--task-id", "gate",
                 "--command-line", gate_command)  # fmt: skip
    assert gate["id"] == "gate"
    _wait_tasks(az, {"gate"}, "running")
    running = _task_counts(az)
    expected = {"active": 0, "running": 1, "completed": 4, "succeeded": 3, "failed": 1}
    assert counts(running, "taskCounts") == expected
    nodes = az.ok("batch", "node", "list", "--pool-id", POOL)
    assert [(n["id"], n["state"], n["runningTasksCount"]) for n in nodes] == [
        (node_id, "running", 1)
    ]
    release.touch()
    tasks = _wait_tasks(az, FIRST_TASKS | {"gate"}, "completed")
    assert tasks["gate"]["executionInfo"]["exitCode"] == 0
    finished = _task_counts(az)
    expected = {"active": 0, "running": 0, "completed": 5, "succeeded": 4, "failed": 1}
    assert counts(finished, "taskCounts") == expected
    assert counts(finished, "taskSlotCounts") == expected

    nodes = _wait_idle_nodes(az, 1)
    assert nodes[0]["totalTasksSucceeded"] == 4
    assert nodes[0]["totalTasksRun"] >= 5


def _download(az: Az, dest: Path, task_id: str, file_path: str, *extra: str) -> bytes:
    # az resolves a relative --destination against nothing (os.path.dirname('x') == ''): use
    # absolute paths, as a user would have to.
    printed = az.ok(
        "batch", "task", "file", "download",
        "--job-id", JOB, "--task-id", task_id,
        "--file-path", file_path, "--destination", str(dest), *extra,
    )  # fmt: skip
    assert printed is None
    return dest.read_bytes()


def _task_files_download(az: Az, tmp_path: Path) -> None:
    out = tmp_path / "downloads"
    out.mkdir()
    hello = _download(az, out / "hello.out", "hello", "stdout.txt")
    assert hello == b"hello from hello: hi-there\n"
    assert _download(az, out / "hello.err", "hello", "stderr.txt") == b"to-stderr\n"
    assert _download(az, out / "single.out", "single", "stdout.txt") == b"single json-file\n"
    assert _download(az, out / "fails.out", "fails", "stdout.txt").startswith(b"failing\n")
    assert _download(az, out / "gate.out", "gate", "stdout.txt") == b"released\n"
    # a file the task wrote below its working directory
    result = _download(az, out / "result.txt", "writer", "wd/out/result.txt")
    assert result == f"{JOB}/writer\n".encode()
    # a byte range (inclusive end, as ocp-range)
    head = _download(az, out / "range.out", "hello", "stdout.txt",
                     "--start-range", "0", "--end-range", "4")  # fmt: skip
    assert head == b"hello"
    tail = _download(az, out / "tail.out", "hello", "stdout.txt", "--start-range", "6")
    assert tail == b"from hello: hi-there\n"


def _pool_resize(az: Az) -> None:
    def steady_at(target: int) -> dict[str, Any] | None:
        pool = az.ok("batch", "pool", "show", "--pool-id", POOL)
        done = (
            pool["allocationState"] == "steady"
            and pool["targetDedicatedNodes"] == target
            and pool["currentDedicatedNodes"] == target
        )
        return pool if done else None

    assert az.ok("batch", "pool", "resize", "--pool-id", POOL,
                 "--target-dedicated-nodes", "2") is None  # fmt: skip
    wait_for(lambda: steady_at(2), timeout=STATE_TIMEOUT_S, interval=POLL_S, what="2 nodes")
    assert len(_wait_idle_nodes(az, 2)) == 2

    # --abort is stop-resize; on a steady pool it changes nothing.
    assert az.ok("batch", "pool", "resize", "--pool-id", POOL, "--abort") is None
    assert steady_at(2) is not None

    assert az.ok(
        "batch", "pool", "resize", "--pool-id", POOL,
        "--target-dedicated-nodes", "1",
        "--resize-timeout", "PT10M",
        "--node-deallocation-option", "taskcompletion",
    ) is None  # fmt: skip
    pool = wait_for(lambda: steady_at(1), timeout=STATE_TIMEOUT_S, interval=POLL_S, what="1 node")
    assert seconds(pool["resizeTimeout"]) == 10 * 60
    assert len(_wait_idle_nodes(az, 1)) == 1


def _job_and_pool_delete(az: Az) -> None:
    assert az.ok("batch", "job", "delete", "--job-id", JOB, "--yes") is None
    wait_for(lambda: _is_absent(az, "job", JOB), timeout=STATE_TIMEOUT_S, interval=POLL_S,
             what="job gone")  # fmt: skip
    assert az.ok("batch", "job", "list") == []

    assert az.ok("batch", "pool", "delete", "--pool-id", POOL, "--yes") is None
    wait_for(lambda: _is_absent(az, "pool", POOL), timeout=STATE_TIMEOUT_S, interval=POLL_S,
             what="pool gone")  # fmt: skip
    assert az.ok("batch", "pool", "list", creds_in_env=True) == []
