"""The quickstart job: pool -> job -> one task per parameter value -> aggregation task,
driven through the official azure-batch SDK against an embedded hybatch service."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from azure.batch import BatchClient
from azure.batch import models as m
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import ResourceNotFoundError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hybatch.quickstart.embedded import EmbeddedService

POOL = "quickstart-pool"
JOB = "quickstart-sweep"


def _python(module: str, *args: str) -> str:
    return shlex.join([sys.executable, "-m", module, *args])


def _wait(client: BatchClient, job_id: str, total: int, progress: Progress, bar: object,
          timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = client.get_job_task_counts(job_id).task_counts
        progress.update(bar, completed=counts.completed,  # type: ignore[arg-type]
                        description=f"running {counts.running}, active {counts.active}")
        if counts.completed >= total:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not finish in {timeout_s}s")
        time.sleep(0.1)


def run_quickstart(console: Console, data_dir: Path, points: int, nodes: int,
                   slots: int) -> int:
    results = data_dir / "results"
    console.print(f"[bold]hybatch quickstart[/bold]: {points}-point damping sweep on "
                  f"{nodes} nodes x {slots} slots")
    with EmbeddedService(data_dir) as service:
        console.print(f"  service: {service.endpoint} (account {service.server.account.name})")
        credential = AzureNamedKeyCredential(service.server.account.name,
                                             service.server.account.key)
        client = BatchClient(service.endpoint, credential)
        try:
            client.get_pool(POOL)
        except ResourceNotFoundError:
            client.create_pool(m.BatchPoolCreateOptions(
                id=POOL, vm_size="standard_d2s_v3", target_dedicated_nodes=nodes,
                task_slots_per_node=slots))
        job_id = f"{JOB}-{int(time.time())}"
        client.create_job(m.BatchJobCreateOptions(id=job_id, pool_info=m.BatchPoolInfo(
            pool_id=POOL)))
        dampings = [0.05 + 0.95 * i / max(points - 1, 1) for i in range(points)]
        tasks = [m.BatchTaskCreateOptions(
            id=f"point-{i:03d}",
            command_line=_python("hybatch.quickstart.simulate", "--damping", f"{d:.4f}",
                                 "--out", str(results / job_id)))
            for i, d in enumerate(dampings)]
        client.create_tasks(job_id, tasks)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("sweep", total=points + 1)
            _wait(client, job_id, points, progress, bar)
            client.create_task(job_id, m.BatchTaskCreateOptions(
                id="aggregate",
                command_line=_python("hybatch.quickstart.aggregate", "--results",
                                     str(results / job_id))))
            _wait(client, job_id, points + 1, progress, bar)
        failed = [t.id for t in client.list_tasks(job_id, filter="state eq 'completed'")
                  if t.execution_info is None or t.execution_info.result != "success"]
        summary = b"".join(client.download_task_file(job_id, "aggregate", "stdout.txt"))
        console.print(f"  aggregation: {summary.decode().strip()}")
        console.print(f"  results: {results / job_id / 'summary.csv'}", soft_wrap=True)
        if failed:
            console.print(f"[red]failed tasks: {', '.join(failed)}[/red]")
            return 1
        console.print("[green]sweep complete[/green]")
        return 0
