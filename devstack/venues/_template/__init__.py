"""The local venue template: copy this folder to ``devstack/venues/<name>/`` (``brokers/_template/README.md``).

A local venue speaks the broker's real wire protocol (its endpoints, authentication, error shapes, limits, stream)
in front of the paper matching engine (``sim.venue.SimVenue``), so the adapter is tested against what the broker
really says. ``python -m devstack.venues.<name>`` runs it (``__main__.py``); ``LAUNCH`` tells ``make run`` how to start
it when ``EXODUS_<NAME>__LOCAL_VENUE=true`` and how to point the worker's adapter at it. Keep this module cheap to
import: the venue itself loads in its own process.
"""

from __future__ import annotations

from core.settings import Settings
from devstack.venues import Launch

__all__ = ["LAUNCH"]


def _env(settings: Settings) -> dict[str, str]:
    # Your copy: the EXODUS_<NAME>__* variables that point the adapter at the venue (its URL, development keys).
    return {"EXODUS_TEMPLATE__BASE_URL": "http://127.0.0.1:8799"}


def _banner(settings: Settings, api: str) -> str:
    # Your copy: where the venue is, and a curl that routes an order to the broker ("broker": "<name>").
    return f'\n  {"template":<14} local venue on http://127.0.0.1:8799; orders with "broker": "template" via {api}\n'


LAUNCH = Launch(
    # Your copy: settings.<name>.local_venue_port (a field of its settings section).
    port=lambda settings: 8799,
    port_setting="EXODUS_TEMPLATE__LOCAL_VENUE_PORT",
    env=_env,
    banner=_banner,
)
