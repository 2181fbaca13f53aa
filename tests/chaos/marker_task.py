"""The chaos test's task program (run as ``python -I -S marker_task.py <dir> <ms>``, no shell).

Appends ``S <pid> <ppid> <time>`` to ``<dir>/<task id>`` when it starts, works for ``<ms>``
milliseconds, then appends ``E <pid> <time>``. One-line appends to an O_APPEND file are atomic,
so the file is an exact log of the task's runs: a run with no ``E`` was interrupted, and the
parent pid tells which node agent started it.
"""

import os
import sys
import time


def mark(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main() -> None:
    directory, work_ms = sys.argv[1], int(sys.argv[2])
    path = os.path.join(directory, os.environ["AZ_BATCH_TASK_ID"])
    mark(path, f"S {os.getpid()} {os.getppid()} {time.time():.6f}\n")
    time.sleep(work_ms / 1000)  # the task's work
    mark(path, f"E {os.getpid()} {time.time():.6f}\n")


if __name__ == "__main__":
    main()
