"""The broker template: copy this folder to ``brokers/<name>/`` and follow ``README.md`` beside it.

Not registered: ``brokers/__init__.py`` does not list it, so no order can be routed to it. ``tests/brokers/_template/``
runs it against the contract suite's "not written yet" checks (``UnwrittenContract``): it builds from its spec and
every call raises ``NotImplementedError`` naming itself, so an adapter copied from it fails loudly until written.

Keep this module cheap to import (the registry imports every adapter's package): the broker's library and the
execution side load in the factory, when a worker builds the broker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers._template.config import TEMPLATE_CAPABILITIES, TemplateSettings
from brokers.base import Broker, BrokerContext, BrokerSpec, QuoteSource
from brokers.sessions import session_check_for

if TYPE_CHECKING:
    from brokers._template.execution import TemplateBroker

__all__ = ["SPEC", "TEMPLATE_CAPABILITIES", "TemplateBroker", "TemplateSettings"]


async def _build(ctx: BrokerContext) -> Broker:
    # Import the execution side (and with it the broker's library) here, never at the top of this module.
    from brokers._template.execution import TemplateBroker

    # Your copy reads its settings section: ``ctx.settings.<name>`` (see README, "Configure").
    return TemplateBroker(TemplateSettings(), pool=ctx.require_pool("template"), quotes=ctx.quotes)


SPEC = BrokerSpec(
    # The name orders use ("broker": "<name>"), the task queue suffix, the journal's and the session's key.
    name="template",
    capabilities=TEMPLATE_CAPABILITIES,
    factory=_build,
    description="the template broker (not registered yet): every call raises NotImplementedError",
    # The attribute of core.settings.Settings holding the broker's section (EXODUS_<NAME>__...); None until you add it.
    settings_section=None,
    # Refuses new orders while the broker's session is down (the adapter records it with a SessionRecorder).
    session_check=session_check_for("template"),
    # The source its quotes are stored under; risk prices the broker's orders with it (same as the name).
    quotes=QuoteSource("template", description="what publishes them (an endpoint, a stream)"),
    # Your copy: venue=LocalVenue(module="devstack.venues.<name>") once the local venue exists.
    venue=None,
    # Your copy: the pip extra with the broker's libraries (pyproject.toml), and the modules it provides.
    extra=None,
    libraries=(),
)


def __getattr__(name: str) -> Any:
    if name == "TemplateBroker":
        from brokers._template.execution import TemplateBroker

        return TemplateBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
