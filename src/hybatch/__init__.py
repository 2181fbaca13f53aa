"""hybatch: a self-hosted service speaking the Azure Batch data-plane API."""
