"""The acceptance scenario with the legacy azure-batch 14.2 SDK against a real ``hybatch serve``.

The scenario (``scenario_14.py``) runs in its own virtualenv, made by ``scripts/legacy_venv.sh``
(a no-op once it exists), because 14.2 and the project's azure-batch 15.1 cannot share one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.server import ACCOUNT, KEY, ServerProcess

pytestmark = pytest.mark.legacy_sdk

REPO_ROOT = Path(__file__).resolve().parents[2]
LEGACY_VENV_SCRIPT = REPO_ROOT / "scripts" / "legacy_venv.sh"
SCENARIO = Path(__file__).with_name("scenario_14.py")
VENV_TIMEOUT_S = 240
SCENARIO_TIMEOUT_S = 240


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode("utf-8", errors="replace")
    return output or ""


def _clean_env() -> dict[str, str]:
    """The caller's environment without what would leak this venv into the legacy python."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def legacy_python() -> Path:
    """The python of the azure-batch 14.2 virtualenv (created on first use, then cached)."""
    result = subprocess.run(
        ["bash", str(LEGACY_VENV_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=VENV_TIMEOUT_S,
        env=_clean_env(),
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{LEGACY_VENV_SCRIPT.name} failed:\n{output}"
    python = Path(result.stdout.strip().splitlines()[-1])
    assert python.is_file(), f"no python at {python}:\n{output}"
    return python


@pytest.mark.timeout(VENV_TIMEOUT_S + SCENARIO_TIMEOUT_S + 60)
def test_azure_batch_14_scenario(legacy_python: Path, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        try:
            result = subprocess.run(
                [
                    str(legacy_python),
                    str(SCENARIO),
                    "--endpoint",
                    server.endpoint,
                    "--account",
                    ACCOUNT,
                    "--key",
                    KEY,
                ],
                capture_output=True,
                text=True,
                timeout=SCENARIO_TIMEOUT_S,
                cwd=tmp_path,
                env=_clean_env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(
                f"scenario ran past {SCENARIO_TIMEOUT_S}s:\n{_text(exc.stdout)}{_text(exc.stderr)}"
            )
        assert server.proc is not None
        server_alive = server.proc.poll() is None
    finally:
        server.stop()

    output = result.stdout + result.stderr
    server_log = server.log.read_text(errors="replace")[-4000:] if server.log.exists() else ""
    assert result.returncode == 0, (
        f"azure-batch 14.2 scenario failed (exit {result.returncode}):\n{output}\n"
        f"--- server log (tail) ---\n{server_log}"
    )
    assert "all" in output and "checks passed with azure-batch 14.2.0" in output, output
    assert server_alive, f"server exited during the scenario:\n{server_log}"
