"""Venue-neutral state of the exchange emulator: markets, accounts, positions, balances, fills and their causes
(trade history), protective orders, faults, tampering, the request log and per-IP request weight.

Venue modules (``emulator/venues``) print this state in their venue's JSON; nothing in this package knows a
wire format, so a new venue needs no change here.
"""

from emulator.state.account import EmulatedAccount, VenueRules
from emulator.state.history import CAUSES, CLOSE_CAUSES, Fill
from emulator.state.limits import IpLimiter, Verdict
from emulator.state.markets import MarketSpec
from emulator.state.orders import PROTECTIVE_TYPES, ProtectiveOrder
from emulator.state.records import (
    ENDPOINT_GROUPS,
    FAULT_KINDS,
    SIDES,
    EmulatedOrder,
    Fault,
    Position,
    RecordedRequest,
    Tamper,
)
from emulator.state.streams import STREAM_FAULT_KINDS, AccountChange, PositionChange, StreamFault

__all__ = [
    "CAUSES",
    "CLOSE_CAUSES",
    "ENDPOINT_GROUPS",
    "FAULT_KINDS",
    "PROTECTIVE_TYPES",
    "SIDES",
    "STREAM_FAULT_KINDS",
    "AccountChange",
    "EmulatedAccount",
    "EmulatedOrder",
    "Fault",
    "Fill",
    "IpLimiter",
    "MarketSpec",
    "Position",
    "PositionChange",
    "ProtectiveOrder",
    "RecordedRequest",
    "StreamFault",
    "Tamper",
    "VenueRules",
    "Verdict",
]
