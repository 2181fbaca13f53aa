"""VM sizes and node images the server offers: facts handed to the core as data.

The catalogue itself (a TOML file, built-in defaults, backends) is read outside the core
(``hybatch.vm_sizes``); the core only checks names against it and takes a size's default
task slots. A core built without a catalogue accepts any non-empty size (unit tests).

Imports: standard library, core.errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hybatch.core.errors import invalid_property


@dataclass(frozen=True, slots=True)
class SizeFacts:
    """What the core needs to know about one vmSize."""

    cores: int = 1
    slots: int = 1
    """taskSlotsPerNode of a pool of this size that does not name it."""
    lookahead: int = 1
    """Rounds of look-ahead offers its nodes take for short tasks (``NodeRecord``)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """The sizes (lower-cased names) and node agent SKUs (lower-cased) this server runs."""

    sizes: Mapping[str, SizeFacts] = field(default_factory=dict)
    node_agent_skus: frozenset[str] = frozenset()


def check_vm_size(offer: Offer | None, value: str) -> SizeFacts | None:
    """The facts of a pool's vmSize; an unknown size is refused as Batch refuses it (400
    InvalidPropertyValue naming vmSize). None when the core has no catalogue."""
    if not value.strip():
        raise invalid_property("vmSize", value, "The VM size must not be empty.")
    if offer is None:
        return None
    facts = offer.sizes.get(value.strip().lower())
    if facts is None:
        raise invalid_property("vmSize", value, "The VM size is not offered by this server "
                               "(see its VM size catalogue).")
    return facts


def check_node_agent_sku(offer: Offer | None, value: str | None) -> None:
    """A pool's ``virtualMachineConfiguration.nodeAgentSKUId`` must be a supported image's."""
    if offer is None or value is None or not offer.node_agent_skus:
        return
    if value.strip().lower() not in offer.node_agent_skus:
        raise invalid_property("nodeAgentSKUId", value, "The node agent SKU is not one of "
                               "this server's supported images.")
