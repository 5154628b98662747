"""Whether kopf's peering has paused this replica, for the work kopf does not pause itself.

kopf pauses its watch streams when a peer of higher priority runs, but not what this operator runs
beside them: the scheduler (retries, drift repairs, renewals, grace periods) and the drift check. kopf
keeps the pause to itself; its one public sign is the peering log record ("Pausing operations ...",
"Resuming operations ..."), so a logging filter on kopf's peering logger follows it. What a paused
replica already has under way still finishes; the reconciler's conditional intents make that safe.
"""

from __future__ import annotations

import asyncio
import logging

#: where kopf announces its peering decisions
PEERING_LOGGER = "kopf._core.engines.peering"
PAUSED_PREFIXES = ("Pausing operations", "Pausing all operators")
RESUMED_PREFIX = "Resuming operations"
logger = logging.getLogger(__name__)


class Standby(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._active = asyncio.Event()
        self._active.set()

    @property
    def standing_by(self) -> bool:
        return not self._active.is_set()

    async def wait_active(self) -> None:
        await self._active.wait()

    def filter(self, record: logging.LogRecord) -> bool:
        """Follow kopf's decisions (logged on the event loop's thread); let every record through."""
        message = record.getMessage()
        if message.startswith(PAUSED_PREFIXES) and not self.standing_by:
            self._active.clear()
            logger.info("standing by: retries, repairs and drift checks wait while a peer runs")
        elif message.startswith(RESUMED_PREFIX) and self.standing_by:
            self._active.set()
            logger.info("active again: retries, repairs and drift checks resume")
        return True

    def install(self) -> None:
        logging.getLogger(PEERING_LOGGER).addFilter(self)

    def uninstall(self) -> None:
        logging.getLogger(PEERING_LOGGER).removeFilter(self)
