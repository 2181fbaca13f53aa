"""Certificate operations: the feature is retired in Azure Batch (29 February 2024).

The service now refuses every certificate operation with 400 ``CertificateRetired`` (the
answer observed from the real service, recorded in docs/coverage.md); so does hybatch,
whatever the request carries.
"""

from __future__ import annotations

from hybatch.core.errors import DomainError

OPERATIONS = (
    "Certificates_ListCertificates",
    "Certificates_CreateCertificate",
    "Certificates_GetCertificate",
    "Certificates_DeleteCertificate",
    "Certificates_CancelCertificateDeletion",
)
"""Every certificate operation of the spec: all answer ``certificate_retired()`` (routed by
``api.app.RETIRED``)."""

RETIRED_MESSAGE = "The 'Azure Batch Certificates' feature was retired on 02/29/2024."
RETIRED_REASON = ("Certificate operations are no longer supported: the Azure Batch "
                  "Certificates feature was retired on 02/29/2024. Use the Azure Key Vault VM "
                  "extension or managed identities to provide certificates to nodes.")


def certificate_retired() -> DomainError:
    return DomainError("CertificateRetired", RETIRED_MESSAGE, details={"Reason": RETIRED_REASON})
