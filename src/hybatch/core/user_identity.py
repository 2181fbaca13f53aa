"""A task's ``userIdentity``: validated at creation and handed to the node as a short code.

Only auto-users are run: ``autoUser.scope`` ``task`` (an account of the task's own) or
``pool`` (one account shared by the pool's tasks on a node, Batch's default when a scope is
not given) and ``elevationLevel`` ``nonadmin`` (the default) or ``admin``. A ``username``
(a pool ``userAccounts`` entry) answers 400 UnsupportedProperty: pools cannot declare OS
accounts here. Which OS account a code maps to is the node's business
(:mod:`hybatch.node.identity`); a task without ``userIdentity`` runs as the service's own
user, so the common path does no account work at all.

Imports: core modules, wire models.
"""

from __future__ import annotations

from hybatch.core.validation import unsupported
from hybatch.schema import UserIdentity

SCOPES = ("task", "pool")
ELEVATIONS = ("nonadmin", "admin")


def validate(identity: UserIdentity | None, prop: str = "userIdentity") -> None:
    """Refuse what cannot be run: a named user account."""
    if identity is None:
        return
    if identity.username is not None:
        raise unsupported("Named user accounts (pool userAccounts)", f"{prop}.username")


def launch_code(identity: UserIdentity | None) -> str:
    """``""`` (the service's own user) or ``"<scope>:<elevation>"`` for the node."""
    if identity is None or identity.auto_user is None:
        return ""
    auto = identity.auto_user
    scope = str(auto.scope.value) if auto.scope is not None else "pool"
    elevation = str(auto.elevation_level.value) if auto.elevation_level is not None else (
        "nonadmin")
    return f"{scope}:{elevation}"
