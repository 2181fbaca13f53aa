"""Certificate operations: the feature is retired in Azure Batch (29 February 2024).

The service now refuses every certificate operation with 400 ``CertificateRetired`` (the
answer observed from the real service, recorded in docs/coverage.md); so does hybatch,
whatever the request carries.
"""

from __future__ import annotations

from starlette.responses import Response

from hybatch.api.handlers.common import endpoint
from hybatch.api.wire import Call
from hybatch.core.errors import DomainError
from hybatch.runtime.service import BatchService

RETIRED_MESSAGE = "The 'Azure Batch Certificates' feature was retired on 02/29/2024."
RETIRED_REASON = ("Certificate operations are no longer supported: the Azure Batch "
                  "Certificates feature was retired on 02/29/2024. Use the Azure Key Vault VM "
                  "extension or managed identities to provide certificates to nodes.")


def certificate_retired() -> DomainError:
    return DomainError("CertificateRetired", RETIRED_MESSAGE, details={"Reason": RETIRED_REASON})


@endpoint
async def retired(call: Call, service: BatchService, **path: str) -> Response:
    raise certificate_retired()
