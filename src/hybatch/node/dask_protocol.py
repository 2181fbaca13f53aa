"""Names shared by the Dask backend (service side) and the node plugin (worker side), kept
free of imports so the service loads distributed only when it uses a Dask cluster.

Imports: nothing.
"""

PLUGIN_NAME = "hybatch-node"
SLOTS_RESOURCE = "hybatch-slots"
"""Worker resource holding the node's task slots (a task takes its requiredSlots of it)."""
