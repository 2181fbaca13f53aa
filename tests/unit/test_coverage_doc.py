"""docs/coverage.md lists every spec operation and matches the route table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hybatch.api.app import IMPLEMENTED, build_routes
from hybatch.schema._generated.operations import OPERATIONS

ROOT = Path(__file__).resolve().parents[2]


def test_coverage_doc_is_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "spec_coverage.py"),
                             "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_operation_is_routed() -> None:
    routed = {(route.path, method) for route in build_routes() for method in route.methods
              if method != "HEAD" or route.methods == {"HEAD"}}
    for op in OPERATIONS:
        path = op.path.replace("{filePath}", "{filePath:path}")
        assert (path, op.method) in routed, op.operation_id
    assert set(IMPLEMENTED) <= {op.operation_id for op in OPERATIONS}
