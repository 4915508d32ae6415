"""What the bridge's roles share: its broker name and NOTIFY channel, and the rows of its tables.

The tables are created by ``migrations/0003_mt5_bridge.sql``; their statements are in ``tables.py``. Nothing here
does I/O, so every role (the EA-facing bridge, the command queue, reconciliation, the session check) can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from brokers.mt5.protocol import Ack, Command, CommandKind

__all__ = ["BRIDGE_CHANNEL", "BROKER", "CommandState"]

#: NOTIFY channel: payload ``ack:<command_id>`` or ``reports:<account>``.
BRIDGE_CHANNEL: Final = "exodus_mt5"
BROKER: Final = "mt5"


@dataclass(frozen=True, slots=True)
class CommandState:
    """Where a command stands."""

    command_id: str
    account: str
    order_id: str
    kind: CommandKind
    state: str
    command: Command
    ack: Ack | None

    @property
    def done(self) -> bool:
        """Acknowledged, withdrawn or expired: nothing more will happen to it."""
        return self.state in ("ACKED", "WITHDRAWN", "EXPIRED")
