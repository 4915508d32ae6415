"""Which brokers' libraries a run needs: ``python -m devstack.extras`` prints the pip extras still to install.

A broker's own libraries are a pip extra named by its spec (``fix``: ``quickfix``, which compiles from source for
minutes; ``alpaca``: ``websockets``). ``make run`` installs the base and then only the extras of the brokers it will
run: those the worker owns (``EXODUS_WORKER__BROKERS``) and those whose local venue it starts
(``EXODUS_<BROKER>__LOCAL_VENUE=true``). ``make test`` installs every extra. ``python -m devstack.extras --all``
prints the extras of every registered broker, installed or not (the Docker image installs those).
"""

from __future__ import annotations

import sys

from brokers import BROKERS, BrokerSpec
from core.errors import ConfigError
from core.settings import Settings, get_settings

__all__ = ["all_extras", "configured_brokers", "missing_extras"]


def configured_brokers(settings: Settings) -> list[BrokerSpec]:
    """The brokers a ``make run`` with ``settings`` runs: owned by the worker, or with a local venue started."""
    names = list(settings.worker.brokers)
    names += [name for name, spec in BROKERS.items() if spec.local_venue_wanted(settings) and name not in names]
    unknown = [n for n in names if n not in BROKERS]
    if unknown:
        raise ConfigError(f"unknown broker {unknown[0]!r} in worker.brokers; known: {', '.join(sorted(BROKERS))}")
    return [BROKERS[n] for n in names]


def missing_extras(settings: Settings) -> list[str]:
    """The pip extras of the configured brokers whose libraries are not installed, in order, once each."""
    out: list[str] = []
    for spec in configured_brokers(settings):
        if spec.extra and spec.missing_libraries() and spec.extra not in out:
            out.append(spec.extra)
    return out


def all_extras() -> list[str]:
    """The pip extras of every registered broker, in registry order, once each."""
    out: list[str] = []
    for spec in BROKERS.values():
        if spec.extra and spec.extra not in out:
            out.append(spec.extra)
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the missing extras (``--all``: every broker's), comma-separated (nothing when there is none)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--all"]:
        print(",".join(all_extras()))
        return 0
    if args:
        print("usage: python -m devstack.extras [--all]", file=sys.stderr)
        return 2
    try:
        extras = missing_extras(get_settings())
    except ConfigError as e:
        print(f"make run: {e}", file=sys.stderr)
        return 1
    if extras:
        print(",".join(extras))
    return 0


if __name__ == "__main__":
    sys.exit(main())
