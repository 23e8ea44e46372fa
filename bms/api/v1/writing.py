"""One point write, recorded and waited for: what ``POST /api/points/<name>/write``, the priority-array API and
``POST /api/v1/points/<name>/write`` (and ``relinquish``) share.

The command path itself (permission, range, idempotency by ``command_id``, audit) is
:func:`bms.control.services.submit_write`; this adds the wait for the outcome and the HTTP status each outcome is
answered with: 200 final, 202 recorded but not final yet, 502 failed, 504 expired unsent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from bms.control.models import Command
from bms.control.services import submit_write, wait_for_outcome
from bms.engine.dbhealth import UNAVAILABLE_ERRORS


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """The command as last read, whether this call created it, and whether its outcome could be waited for."""

    command: Command
    created: bool
    #: False: the database went away while waiting (the command was recorded and handed to the engine)
    waited: bool = True

    @property
    def status(self) -> int:
        """The HTTP status that answers this outcome."""
        if not self.waited:
            return 202
        return outcome_status(self.command)


def outcome_status(command: Command) -> int:
    """200 for a final outcome, 502 failed, 504 expired, 202 not final yet."""
    if command.status == Command.FAILED:
        return 502
    if command.status == Command.EXPIRED:
        return 504
    return 200 if command.status in Command.FINAL else 202


def write_and_wait(**submission: Any) -> WriteOutcome:
    """:func:`submit_write` with ``submission`` (raises its :class:`CommandRejected`), then wait for the outcome.

    The wait is ``BMS_COMMAND_WAIT_SECONDS``. A database that goes away during the wait does not undo the
    command (it is recorded and the engine has it): the outcome is then ``waited=False``, to be asked for later.
    """
    recorded = submit_write(**submission)
    try:
        command = wait_for_outcome(recorded.command, settings.BMS_COMMAND_WAIT_SECONDS)
    except UNAVAILABLE_ERRORS:
        return WriteOutcome(recorded.command, recorded.created, waited=False)
    return WriteOutcome(command, recorded.created)
