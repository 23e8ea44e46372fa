"""The engine's view of the node's role, handed to it from outside.

The engine never decides its role: the redundancy layer (or, for a single
node, :class:`StandaloneRole`) owns it. Every device write asks
:meth:`RoleGate.may_write` immediately before it is sent.
"""

from __future__ import annotations

import abc


class RoleGate(abc.ABC):
    """Abstract base for role providers: is this node active, and in which epoch?"""

    @property
    @abc.abstractmethod
    def active(self) -> bool:
        """True while this node may poll devices and run BMS functions."""

    @property
    @abc.abstractmethod
    def epoch(self) -> int:
        """The fencing epoch this node believes is current."""

    def may_write(self, epoch: int) -> bool:
        """True if a write prepared in ``epoch`` may still be sent now."""
        return self.active and epoch == self.epoch


class StandaloneRole(RoleGate):
    """A node without a partner: always active, epoch 0."""

    @property
    def active(self) -> bool:
        return True

    @property
    def epoch(self) -> int:
        return 0
