"""Wire models generated from the Azure Batch OpenAPI description (see tools/gen_schema.py)."""

from hybatch.schema._generated.models import *  # noqa: F403
