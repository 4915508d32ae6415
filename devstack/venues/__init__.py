"""Local venues: counterparts that speak a broker's real wire protocol in front of the paper matching engine.

One package per broker (``devstack/venues/<broker>/``), named by the broker's spec (``LocalVenue.module``). Each
runs as ``python -m devstack.venues.<broker>`` and exports ``LAUNCH``, what ``make run`` needs to start it when the
broker's settings section says ``local_venue=true`` and to pair the worker's adapter with it; its package must be
cheap to import (the venue itself, and the broker's library, load in the venue's own process). The tests run the
same venue classes in process. Venues import ``sim`` and ``core`` (and the broker's wire vocabulary); ``sim``
never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from core.settings import Settings

__all__ = ["Launch", "launch_of"]


def _nothing(settings: Settings) -> dict[str, str]:
    return {}


def _no_accounts(settings: Settings) -> list[tuple[str, str]]:
    return []


def _no_banner(settings: Settings, api: str) -> str:
    return ""


@dataclass(frozen=True)
class Launch:
    """How ``make run`` starts a broker's local venue and pairs the worker with it."""

    #: The TCP port the venue listens on (``make run`` refuses to start when something else does, then waits for it).
    port: Callable[[Settings], int]
    #: The setting that chooses the port, for the message when it is taken (``EXODUS_FIX__PORT``).
    port_setting: str
    #: ``EXODUS_*`` variables given to the venue and the worker, so both agree (URLs, keys).
    env: Callable[[Settings], dict[str, str]] = _nothing
    #: Accounts registered for the broker in development: ``(account, description)``.
    accounts: Callable[[Settings], list[tuple[str, str]]] = _no_accounts
    #: What ``make run`` prints about the venue once the stack runs (given the API's address); "" prints nothing.
    banner: Callable[[Settings, str], str] = _no_banner
    #: Extra words for the start-up line ("FIX.4.4").
    detail: Callable[[Settings], str] = field(default=lambda settings: "")


def launch_of(module: str) -> Launch:
    """The ``LAUNCH`` of the venue package ``module``."""
    launch = getattr(importlib.import_module(module), "LAUNCH", None)
    if not isinstance(launch, Launch):
        raise TypeError(f"{module} has no LAUNCH (a devstack.venues.Launch)")
    return launch
