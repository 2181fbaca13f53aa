"""The dependency hop of hybatch through the Azure Batch REST API: parent process end to
child process start, on an idle pool, against the submit-to-start latency of an independent
task measured in the same run.

One run, on this host:

1. the floor: this client spawning ``/bin/date +%s%N`` itself (exec plus ``date``'s startup);
2. a real ``hybatch serve`` process and a pool of one node with 2 task slots;
3. M samples, alternating, each waited for before the next so the pool is idle every time:
   - a **hop** sample: one ``addtaskcollection`` request (official SDK,
     ``create_task_collection``) holding a parent and a child that depends on it, in a job
     with ``usesTaskDependencies``; both run ``/bin/date +%s%N``;
   - a **peer** sample: one independent task (``create_task``) in a job without
     dependencies, running the same command.

The hop is timed from the parent's ``executionInfo.endTime`` (the node's clock when it reaped
the parent) to the stamp the child process printed, and, on the server's side only, to the
child's ``executionInfo.startTime`` (the node's clock when it spawned the child). Between the
two lie the node reporting the exit, one writer turn (complete the parent, release and place
the child, commit) and the start order to the node. Writes JSON to ``--out`` and prints it.
Timings are reported, never asserted; see ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from azure.batch import BatchClient
from azure.batch import models as m

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import (  # the sibling benchmark's helpers
    CLOCK_NOTE,
    STAMP_COMMAND,
    Service,
    create_pool,
    delete_all,
    epoch_ns,
    filesystem_of,
    local_stamp_delays,
    machine_info,
    summary_ms,
    utc_iso,
    wait_until,
)

SLOTS = 2
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "dependency_hop.json"

DEFINITIONS = {
    "hop.parent_end_to_child_stamp_ms": "the parent's executionInfo.endTime (node clock, when "
    "the node reaped the parent process) -> the stamp the child process printed: the "
    "user-visible dependency hop, including exec and date's startup in the child",
    "hop.parent_end_to_child_server_start_ms": "the parent's executionInfo.endTime -> the "
    "child's executionInfo.startTime (both node clock): the hop without the child's exec",
    "hop.parent_stamp_to_child_stamp_ms": "the parent's own stamp -> the child's stamp: "
    "also counts the parent process printing, exiting and being reaped",
    "hop.submit_to_child_stamp_ms": "client clock before the request -> child stamp: the "
    "whole two-task chain as the client sees it",
    "peer.submit_to_process_stamp_ms": "independent task: client clock before create_task -> "
    "the stamp its process printed (the same measure as throughput.py's latency)",
    "peer.submit_to_server_start_ms": "independent task: client clock -> its "
    "executionInfo.startTime",
    "local_exec_to_stamp_ms": "this client spawning the same command: the floor for exec "
    "plus date's startup",
}


def stamp_of(client: BatchClient, job_id: str, task_id: str) -> int:
    return int(b"".join(client.download_task_file(job_id, task_id, "stdout.txt")))


def completed_task(client: BatchClient, job_id: str, task_id: str, timeout: float,
                   interval: float) -> m.BatchTask:
    def done() -> m.BatchTask | None:
        task = client.get_task(job_id, task_id, select=["state", "executionInfo"])
        return task if task.state == m.BatchTaskState.COMPLETED else None

    task = wait_until(done, timeout=timeout, interval=interval, what=f"{task_id} completed")
    info = task.execution_info
    if info is None or info.exit_code != 0 or info.start_time is None or info.end_time is None:
        raise RuntimeError(f"task {task_id} did not run cleanly: {info}")
    return task


def hop_sample(client: BatchClient, job_id: str, i: int, timeout: float,
               interval: float) -> dict[str, int]:
    parent_id, child_id = f"p{i:05d}", f"c{i:05d}"
    group = m.BatchTaskGroup(task_values=[
        m.BatchTaskCreateOptions(id=parent_id, command_line=STAMP_COMMAND),
        m.BatchTaskCreateOptions(id=child_id, command_line=STAMP_COMMAND,
                                 depends_on=m.BatchTaskDependencies(task_ids=[parent_id])),
    ])
    submit = time.time_ns()
    result = client.create_task_collection(job_id, group)
    if any(r.status != m.BatchTaskAddStatus.SUCCESS for r in result.result_values or []):
        raise RuntimeError(f"hop sample {i} was not added: {result.result_values}")
    child = completed_task(client, job_id, child_id, timeout, interval)
    parent = completed_task(client, job_id, parent_id, timeout, interval)
    assert parent.execution_info is not None and child.execution_info is not None
    parent_end = epoch_ns(parent.execution_info.end_time)
    child_start = epoch_ns(child.execution_info.start_time)
    child_stamp = stamp_of(client, job_id, child_id)
    parent_stamp = stamp_of(client, job_id, parent_id)
    return {
        "parent_end_to_child_stamp": child_stamp - parent_end,
        "parent_end_to_child_server_start": child_start - parent_end,
        "parent_stamp_to_child_stamp": child_stamp - parent_stamp,
        "submit_to_child_stamp": child_stamp - submit,
    }


def peer_sample(client: BatchClient, job_id: str, i: int, timeout: float,
                interval: float) -> dict[str, int]:
    task_id = f"t{i:05d}"
    submit = time.time_ns()
    client.create_task(job_id, m.BatchTaskCreateOptions(id=task_id, command_line=STAMP_COMMAND))
    task = completed_task(client, job_id, task_id, timeout, interval)
    assert task.execution_info is not None
    return {
        "submit_to_process_stamp": stamp_of(client, job_id, task_id) - submit,
        "submit_to_server_start": epoch_ns(task.execution_info.start_time) - submit,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started_at = utc_iso()
    info = machine_info()
    local_stamps = local_stamp_delays(args.samples)
    tmp = tempfile.TemporaryDirectory(prefix="hybatch-bench-", dir=args.data_root,
                                      ignore_cleanup_errors=True)
    info["data_dir_filesystem"] = filesystem_of(Path(tmp.name))
    node_root = None
    if args.node_root is not None:
        node_root = Path(tempfile.mkdtemp(prefix="hybatch-bench-nodes-", dir=args.node_root))
        info["node_root_filesystem"] = filesystem_of(node_root)
    hops: dict[str, list[int]] = {}
    peers: dict[str, list[int]] = {}
    with tmp, Service(Path(tmp.name), node_root) as service:
        client = service.client()
        pool_id, hop_job, peer_job = "bench-pool", "bench-hop", "bench-independent"
        try:
            pool_ready_s = create_pool(client, pool_id, SLOTS, args.timeout)
            client.create_job(m.BatchJobCreateOptions(
                id=hop_job, pool_info=m.BatchPoolInfo(pool_id=pool_id),
                uses_task_dependencies=True))
            client.create_job(m.BatchJobCreateOptions(
                id=peer_job, pool_info=m.BatchPoolInfo(pool_id=pool_id)))
            started = time.perf_counter()
            for i in range(args.samples + 1):  # sample 0 warms both paths up, not kept
                order = (hop_sample, peer_sample) if i % 2 else (peer_sample, hop_sample)
                for measure in order:
                    job = hop_job if measure is hop_sample else peer_job
                    sample = measure(client, job, i, args.timeout, args.poll_interval)
                    if i == 0:
                        continue
                    into = hops if measure is hop_sample else peers
                    for name, value in sample.items():
                        into.setdefault(name, []).append(value)
            sampling_s = time.perf_counter() - started
        finally:
            delete_all(client, pool_id, [hop_job, peer_job])
            client.close()
    hop_p50 = statistics.median(hops["parent_end_to_child_stamp"])
    peer_p50 = statistics.median(peers["submit_to_process_stamp"])
    return {
        "benchmark": "dependency_hop",
        "started_at": started_at,
        "finished_at": utc_iso(),
        "samples": args.samples,
        "warmup_samples_discarded": 1,
        "slots": SLOTS,
        "poll_interval_s": args.poll_interval,
        "stamp_command": STAMP_COMMAND,
        "clock": CLOCK_NOTE,
        "definitions": DEFINITIONS,
        "machine": {**info, "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "pool_ready_s": round(pool_ready_s, 3),
        "sampling_s": round(sampling_s, 3),
        "hop": {f"{k}_ms": summary_ms(v) for k, v in hops.items()},
        "peer": {f"{k}_ms": summary_ms(v) for k, v in peers.items()},
        "local_exec_to_stamp_ms": summary_ms(local_stamps),
        "ratio_hop_p50_to_peer_submit_p50": round(hop_p50 / peer_p50, 3) if peer_p50 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200, metavar="M",
                        help="hop samples and as many peer samples (default 200)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where to write the JSON (default "
                             "bench/results/dependency_hop.json)")
    parser.add_argument("--poll-interval", type=float, default=0.05, metavar="S",
                        help="client polling interval while waiting for a sample to end "
                             "(default 0.05, as throughput.py; no measured interval depends on it)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="deadline for each wait (default 60)")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="where the server's temporary data directory goes")
    parser.add_argument("--node-root", type=Path, default=None, metavar="DIR",
                        help="put the local nodes' directories under DIR (e.g. /dev/shm)")
    args = parser.parse_args()
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    report = run(args)
    text = json.dumps(report, indent=2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
