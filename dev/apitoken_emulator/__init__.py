"""A local emulator of the Dynatrace Tokens API v2, for tests, the demo and people without a tenant.

It imports only `apitoken_operator.dynatrace.{models,secrets,dates,selector}`: it knows nothing of the
operator or its client. See docs/emulator.md.
"""

from apitoken_emulator.environment import ADMIN_OWNER, Emulator
from apitoken_emulator.faults import FaultConfig, Outage, Paging
from apitoken_emulator.server import start_emulator
from apitoken_emulator.threaded import EmulatorThread

__all__ = ["ADMIN_OWNER", "Emulator", "EmulatorThread", "FaultConfig", "Outage", "Paging", "start_emulator"]
