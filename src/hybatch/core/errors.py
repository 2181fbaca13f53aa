"""Domain errors carrying Batch error codes. The HTTP status lives in api.errors, not here.

Imports: standard library only.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the service refuses; ``code`` is the Batch error code clients switch on."""

    def __init__(
        self, code: str, message: str, *, details: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = dict(details or {})


def not_found(kind: str, ident: str) -> DomainError:
    """``PoolNotFound`` / ``JobNotFound`` / ``TaskNotFound`` / ``NodeNotFound``."""
    return DomainError(f"{kind}NotFound", f"The specified {kind.lower()} does not exist.",
                       details={f"{kind}Id": ident} if kind != "Node" else {"NodeId": ident})


def exists(kind: str, ident: str) -> DomainError:
    return DomainError(f"{kind}Exists", f"The specified {kind.lower()} already exists.",
                       details={f"{kind}Id": ident})


def conflict(code: str, message: str) -> DomainError:
    return DomainError(code, message)


def invalid_property(name: str, value: object, reason: str) -> DomainError:
    return DomainError(
        "InvalidPropertyValue",
        "The value provided for one of the properties in the request body is invalid.",
        details={"PropertyName": name, "PropertyValue": str(value), "Reason": reason},
    )
