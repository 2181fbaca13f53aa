"""A job manager workload: run as a job manager task's command line, it adds tasks to its own
job through the official azure-batch SDK, authenticated with the task's token
(``AZ_BATCH_AUTHENTICATION_TOKEN`` as a bearer token credential), waits until they have all
completed, checks that the token reaches nothing outside its job, and writes what it saw to
``result.json`` in its working directory. Exit 0 when every task it added succeeded.

Usage: ``python job_manager.py COUNT``
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError

PLAIN_HTTP = {"enforce_https": False}
"""azure-core's bearer policy refuses plain http unless told, per call."""
DEADLINE_S = 120.0


class TaskTokenCredential:
    """A TokenCredential handing out the task's own token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def _status(call: Any) -> int:
    try:
        call()
    except HttpResponseError as error:
        return int(error.status_code or 0)
    return 200


def main() -> int:
    count = int(sys.argv[1])
    job_id = os.environ["AZ_BATCH_JOB_ID"]
    client = BatchClient(os.environ["AZ_BATCH_ACCOUNT_URL"],
                         TaskTokenCredential(os.environ["AZ_BATCH_AUTHENTICATION_TOKEN"]))
    tasks = [m.BatchTaskCreateOptions(id=f"work-{i:03d}",
                                      command_line="/bin/sh -c 'echo $AZ_BATCH_TASK_ID'")
             for i in range(count)]
    added = client.create_tasks(job_id, tasks, **PLAIN_HTTP)
    ids = {f"work-{i:03d}" for i in range(count)}
    deadline = time.monotonic() + DEADLINE_S
    done: dict[str, bool] = {}
    while time.monotonic() < deadline:
        done = {t.id: t.execution_info.result == "success" for t in
                client.list_tasks(job_id, **PLAIN_HTTP)
                if t.id in ids and t.state == "completed" and t.execution_info is not None}
        if len(done) == count:
            break
        time.sleep(0.1)
    result = {
        "added": sum(1 for r in added.result_values or [] if r.status == "success"),
        "completed": len(done),
        "succeeded": sum(1 for ok in done.values() if ok),
        "ownJob": _status(lambda: client.get_job(job_id, **PLAIN_HTTP)),
        "pools": _status(lambda: list(client.list_pools(**PLAIN_HTTP))),
        "otherJob": _status(lambda: client.get_job(job_id + "-other", **PLAIN_HTTP)),
        "newJob": _status(lambda: client.create_job(m.BatchJobCreateOptions(
            id=job_id + "-new", pool_info=m.BatchPoolInfo(pool_id="x")), **PLAIN_HTTP)),
    }
    with open("result.json", "w") as handle:
        json.dump(result, handle)
    return 0 if result["succeeded"] == count else 1


if __name__ == "__main__":
    sys.exit(main())
