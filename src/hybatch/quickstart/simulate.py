"""One sweep point: a damped, driven oscillator integrated with NumPy (RK4).

Run as a Batch task: ``python -m hybatch.quickstart.simulate --damping D --out DIR``. Writes
``DIR/point-<D>.json`` with the steady-state amplitude; prints a line to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def amplitude(damping: float, drive_freq: float = 1.2, steps: int = 20_000,
              dt: float = 0.005) -> float:
    """Steady-state amplitude of x'' + c x' + x = cos(w t), from the last quarter of a run."""
    def deriv(t: float, y: np.ndarray) -> np.ndarray:
        return np.array([y[1], np.cos(drive_freq * t) - damping * y[1] - y[0]])

    y = np.zeros(2)
    xs = np.empty(steps)
    t = 0.0
    for i in range(steps):
        k1 = deriv(t, y)
        k2 = deriv(t + dt / 2, y + dt / 2 * k1)
        k3 = deriv(t + dt / 2, y + dt / 2 * k2)
        k4 = deriv(t + dt, y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += dt
        xs[i] = y[0]
    return float(np.abs(xs[-steps // 4:]).max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--damping", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    amp = amplitude(args.damping)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"damping": args.damping, "amplitude": amp,
              "node": os.environ.get("AZ_BATCH_NODE_ID"),
              "task": os.environ.get("AZ_BATCH_TASK_ID")}
    (args.out / f"point-{args.damping:.4f}.json").write_text(json.dumps(record))
    print(f"damping={args.damping:.4f} amplitude={amp:.4f}")


if __name__ == "__main__":
    main()
