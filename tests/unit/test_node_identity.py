"""node.identity: which account a launch's user identity maps to, and the core's codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hybatch.core.errors import DomainError
from hybatch.core.user_identity import launch_code, validate
from hybatch.node.identity import TASK_UID_BASE, TaskAccounts
from hybatch.node.layout import task_paths
from hybatch.schema import UserIdentity


def ident(**body: object) -> UserIdentity:
    return UserIdentity.model_validate(body)


def test_launch_codes_fill_batch_defaults() -> None:
    assert launch_code(None) == ""
    assert launch_code(ident()) == ""
    assert launch_code(ident(autoUser={})) == "pool:nonadmin"  # scope defaults to pool
    assert launch_code(ident(autoUser={"scope": "Task"})) == "task:nonadmin"
    assert launch_code(ident(autoUser={"elevationLevel": "Admin"})) == "pool:admin"


def test_named_accounts_are_unsupported() -> None:
    with pytest.raises(DomainError) as caught:
        validate(ident(username="bob"))
    assert caught.value.code == "UnsupportedProperty"
    validate(ident(autoUser={"scope": "task"}))


def test_a_normal_user_switches_to_no_account(tmp_path: Path) -> None:
    accounts = TaskAccounts(tmp_path, as_root=False)
    paths = task_paths(tmp_path / "t")
    for code in ("", "task:nonadmin", "pool:nonadmin", "pool:admin"):
        assert accounts.resolve(code, paths) is None


def test_task_accounts_are_unique_and_kept_by_retries(tmp_path: Path) -> None:
    accounts = TaskAccounts(tmp_path, as_root=True)
    assert accounts.resolve("task:admin", task_paths(tmp_path / "a")) is None  # root
    first = accounts.resolve("task:nonadmin", task_paths(tmp_path / "a"))
    second = accounts.resolve("task:nonadmin", task_paths(tmp_path / "b"))
    assert first == (TASK_UID_BASE, TASK_UID_BASE, "_azbatch_0")
    assert second == (TASK_UID_BASE + 1, TASK_UID_BASE + 1, "_azbatch_1")
    # the counter survives a restart: a new resolver never hands out a used uid
    third = TaskAccounts(tmp_path, as_root=True).resolve("task:nonadmin",
                                                         task_paths(tmp_path / "c"))
    assert third is not None and third[0] == TASK_UID_BASE + 2


def test_a_retry_keeps_the_account_owning_its_directory(tmp_path: Path) -> None:
    accounts = TaskAccounts(tmp_path, as_root=True)
    paths = task_paths(tmp_path / "retried")
    paths.task_dir.mkdir()
    if os.geteuid() == 0:
        os.chown(paths.task_dir, TASK_UID_BASE + 41, TASK_UID_BASE + 41)
        assert accounts.resolve("task:nonadmin", paths) == (
            TASK_UID_BASE + 41, TASK_UID_BASE + 41, "_azbatch_41")
    else:  # a directory owned by a uid outside the range: a fresh account
        assert accounts.resolve("task:nonadmin", paths) == (
            TASK_UID_BASE, TASK_UID_BASE, "_azbatch_0")
