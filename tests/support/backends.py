"""The bundle of backends the contract suite runs against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from atomcache_core.keys import KeyBuilder
    from atomcache_core.protocols import LockBackend, Notifier, Storage


@dataclass
class Backends:
    """One implementation of each seam, and a key builder for an unused namespace."""

    name: str
    storage: Storage
    lock: LockBackend
    notifier: Notifier
    keys: KeyBuilder
