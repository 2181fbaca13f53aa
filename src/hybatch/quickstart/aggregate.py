"""Aggregation task of the quickstart sweep: collect every point, write a CSV, report the
resonance peak. Run as ``python -m hybatch.quickstart.aggregate --results DIR``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", type=Path, required=True)
    args = parser.parse_args()
    points = sorted((json.loads(p.read_text()) for p in args.results.glob("point-*.json")),
                    key=lambda r: r["damping"])
    lines = ["damping,amplitude,node,task"]
    lines += [f"{r['damping']},{r['amplitude']},{r['node']},{r['task']}" for r in points]
    (args.results / "summary.csv").write_text("\n".join(lines) + "\n")
    peak = max(points, key=lambda r: r["amplitude"])
    print(f"{len(points)} points; largest amplitude {peak['amplitude']:.4f} "
          f"at damping {peak['damping']:.4f}")


if __name__ == "__main__":
    main()
