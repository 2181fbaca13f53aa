"""Build the state an example (or any request) needs on a live server, through the API.

``build`` creates what the operation's path parameters name — pool (and nodes), job, tasks,
job schedule, node user, a file written by a task — with fresh ids, plus what the scenario's
``Needs`` add (a blob container in Azurite, requests that set a state), and returns the
values to put in the path and a map from the example's ids to ours, used to rewrite its
body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from azure.storage.blob import ContainerClient

from hybatch.schema import Operation
from tests.replay.scenarios import NEEDS, Needs
from tests.support.azurite import Azurite
from tests.support.server import wait_for
from tests.support.signed import send


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    assert response.status_code < 300, (
        f"setup step failed: {what}: {response.status_code} {response.text[:500]} (an "
        "example of an implemented operation needs this step; implement the operation it "
        "uses or change the scenario in tests/replay/scenarios.py)")
    return response


@dataclass
class Resources:
    path: dict[str, str] = field(default_factory=dict)
    """Path parameter -> the value to send."""
    renamed: dict[str, str] = field(default_factory=dict)
    """Example id -> ours (rewrites strings in request bodies)."""
    nodes: list[str] = field(default_factory=list)
    """Node ids of the pool, in order (replace the example's ``tvm-...`` ids)."""
    items: set[str] = field(default_factory=set)
    """Ids of the resources a list example's items stand for."""
    job_pool: str = ""
    """The pool the job was created on (``{jobPoolId}`` in body templates)."""


class World:
    """Creates resources with ids unique to one replayed request."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.count = 0

    def build(self, op: Operation, example: dict[str, Any] | None = None,
              needs: Needs | None = None, storage: Azurite | None = None) -> Resources:
        self.count += 1
        tag = f"x{self.count}"
        params = dict(example or {})
        needs = needs or NEEDS.get(op.operation_id, Needs())
        wanted = set(op.path_params)
        res = Resources()
        files = "filePath" in wanted
        run = needs.run_task or files
        node_count = max(needs.nodes, 1 if ("nodeId" in wanted or run) else 0)

        pool_id = ""
        if wanted & {"poolId", "nodeId"} or needs.pool or run or node_count:
            pool_id = self._pool(f"rp-{tag}", node_count)
            res.nodes = self._node_ids(pool_id)
            res.items.add(pool_id)
            self._name(res, params, "poolId", pool_id)
        job_id = ""
        if wanted & {"jobId", "taskId"} or needs.job or files:
            job_id = f"rj-{tag}"
            on = pool_id if (run or needs.nodes) and pool_id else f"nowhere-{tag}"
            res.job_pool = on
            _ok(send(self.http, "POST", "/jobs", body={
                "id": job_id, "poolInfo": {"poolId": on}, **needs.job_extra}), "create job")
            self._name(res, params, "jobId", job_id)
        task_ids = list(needs.tasks)
        if "taskId" in wanted or files:
            task_ids.append(str(params.get("taskId", "task1")))
        for task_id in task_ids:
            _ok(send(self.http, "POST", f"/jobs/{job_id}/tasks", body={
                "id": task_id, "commandLine": needs.task_command}), f"create task {task_id}")
            res.items.add(task_id)
        if "taskId" in wanted or files:
            res.path["taskId"] = task_ids[-1]
        if run and task_ids:
            wait_for(lambda: all(self._get(f"/jobs/{job_id}/tasks/{t}")["state"] == "completed"
                                 for t in task_ids), what="replay tasks to complete")
        if "nodeId" in wanted:
            node = res.nodes[0]
            if run and task_ids:
                node = self._get(f"/jobs/{job_id}/tasks/{task_ids[-1]}")["nodeInfo"]["nodeId"]
            self._name(res, params, "nodeId", node)
        if files:
            relative = "wd/testFile.txt"
            res.path["filePath"] = (relative if "taskId" in wanted else
                                    f"workitems/{job_id}/job-1/{task_ids[-1]}/{relative}")
        if "jobScheduleId" in wanted or needs.schedule:
            schedule_id = f"rs-{tag}"
            _ok(send(self.http, "POST", "/jobschedules", body={
                # not due until far ahead: the schedule timer must not change the schedule
                # (its etag) while a test compares versions
                "id": schedule_id, "schedule": {"recurrenceInterval": "PT1H",
                                                "doNotRunUntil": "2099-01-01T00:00:00Z"},
                "jobSpecification": {"poolInfo": {"poolId": pool_id or f"nowhere-{tag}"}}}),
                "create job schedule")
            res.items.add(schedule_id)
            self._name(res, params, "jobScheduleId", schedule_id)
        if "userName" in wanted:
            user = str(params.get("userName", "replayuser"))
            _ok(send(self.http, "POST",
                     f"/pools/{pool_id}/nodes/{res.path['nodeId']}/users",
                     body={"name": user, "password": "Replay-Passw0rd!"}), "create node user")
            res.path["userName"] = user
        for name in wanted - set(res.path):  # ids nothing here can create (extensions...)
            res.path[name] = str(params.get(name, name))
        if needs.blob_container:
            assert storage is not None, "a blob container needs the azurite fixture"
            container = f"replay-{tag}"
            ContainerClient.from_connection_string(storage.connection_string,
                                                   container).create_container()
            for original in _values_of(params, "containerUrl"):
                res.renamed[original] = storage.container_sas_url(container)
        for step in needs.then:
            _ok(send(self.http, step.method, fill_text(step.path, res), body=step.body),
                f"{step.method} {step.path}")
        return res

    def _name(self, res: Resources, params: dict[str, Any], name: str, value: str) -> None:
        res.path[name] = value
        original = params.get(name)
        if isinstance(original, str):
            res.renamed[original] = value

    def _pool(self, pool_id: str, nodes: int) -> str:
        _ok(send(self.http, "POST", "/pools", body={
            "id": pool_id, "vmSize": "standard_a1", "targetDedicatedNodes": nodes,
            "virtualMachineConfiguration": {
                "imageReference": {"publisher": "canonical", "offer": "ubuntu-24_04-lts",
                                   "sku": "server", "version": "latest"},
                "nodeAgentSKUId": "batch.node.ubuntu 24.04"}}), "create pool")
        if nodes:
            wait_for(lambda: (pool := self._get(f"/pools/{pool_id}"))["allocationState"]
                     == "steady" and pool["currentDedicatedNodes"] == nodes
                     and all(n["state"] == "idle" for n in
                             self._get(f"/pools/{pool_id}/nodes")["value"]),
                     what=f"{nodes} idle node(s)")
        return pool_id

    def _node_ids(self, pool_id: str) -> list[str]:
        return [n["id"] for n in self._get(f"/pools/{pool_id}/nodes")["value"]]

    def _get(self, path: str) -> dict[str, Any]:
        body: dict[str, Any] = _ok(send(self.http, "GET", path), f"GET {path}").json()
        return body


def rewrite(value: Any, res: Resources) -> Any:
    """A request body with the example's ids replaced by ours (node ids in order)."""
    spare = iter(res.nodes)

    def walk(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, str):
            if item in res.renamed:
                return res.renamed[item]
            if item.startswith("tvm-"):
                return next(spare, item)
        return item

    return walk(value)


def fill_text(text: str, res: Resources) -> str:
    """``{name}`` replaced by the resource made for that parameter, ``{jobPoolId}`` by the
    job's pool."""
    values = {**res.path, "nodeId": (res.nodes or ["none"])[0], "jobPoolId": res.job_pool}
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def fill(template: dict[str, Any], res: Resources) -> dict[str, Any]:
    """A body template with ``{name}`` replaced as by ``fill_text``."""
    filled: dict[str, Any] = json.loads(fill_text(json.dumps(template), res))
    return filled


def _values_of(params: dict[str, Any], key: str) -> list[str]:
    """The string values of ``key`` in the example's body parameters."""
    return [str(value[key]) for value in params.values()
            if isinstance(value, dict) and isinstance(value.get(key), str)]
