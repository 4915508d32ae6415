"""Paper broker: the in-process simulated venue (the default broker)."""

from brokers.paper.config import PAPER_CAPABILITIES
from brokers.paper.execution import PaperBroker

__all__ = ["PAPER_CAPABILITIES", "PaperBroker"]
