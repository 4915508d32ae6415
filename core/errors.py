"""The one error tree of Exodus. Foreign errors are converted at one boundary per adapter.

::

    ExodusError
    ├── ConfigError                 bad or missing configuration (fail fast at start-up)
    └── BrokerError                 anything a broker adapter raises
        ├── BrokerUnavailable       timeout, disconnect, 5xx, 429: retried; the outcome may be unknown
        ├── BrokerRejected          a definite refusal of a request: not retried
        └── OrderNotFound           the broker does not know the order: not retried

Activities turn ``BrokerRejected`` and ``OrderNotFound`` into non-retryable ``ApplicationError``s whose
``type`` is the class name (see ``NON_RETRYABLE_ERROR_TYPES``). ``InvalidTransition`` lives in
``core.domain`` because the state machine raises it. A risk denial is a value (``RiskDecision``), never an
exception.
"""

from __future__ import annotations

__all__ = [
    "NON_RETRYABLE_ERROR_TYPES",
    "BrokerError",
    "BrokerRejected",
    "BrokerUnavailable",
    "ConfigError",
    "ExodusError",
    "OrderNotFound",
]


class ExodusError(Exception):
    """Root of every error Exodus raises on purpose."""


class ConfigError(ExodusError):
    """Configuration is missing or inconsistent."""


class BrokerError(ExodusError):
    """A broker adapter failed."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached or did not answer in time; retrying is safe after a status check."""


class BrokerRejected(BrokerError):
    """The broker definitely refused the request."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        """Build the error with the broker's message and, where it has one, its code."""
        super().__init__(message)
        self.code = code


class OrderNotFound(BrokerError):
    """The broker has no order with the given client order id."""


#: ``ApplicationError.type`` strings that Temporal must not retry.
NON_RETRYABLE_ERROR_TYPES = ["BrokerRejected", "OrderNotFound", "InvalidTransition", "ConfigError"]
