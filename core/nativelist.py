"""Which order lists a broker carries natively, and how their legs are marked (pure, deterministic).

A broker declares the contingencies it carries (``BrokerCapabilities.native_lists``). A list of such a contingency
is native only when its shape is one the broker's order classes express (Alpaca's, BROKERS.md §1 and §9). IB
(parent + children with ``parentId``/``transmit``, exits in an OCA group; §4, §9) carries every one of these
shapes and more, so the same table serves both; a wider IB table would go here, keyed by broker:

==========  ================================================================================================
bracket     entry (MARKET, LIMIT, STOP, STOP_LIMIT; DAY or GTC) + a LIMIT take-profit + a STOP or STOP_LIMIT
            stop-loss, both exits on the other side, with the entry's time in force; children released on the
            entry's complete fill (``TriggerMode.FULL``: Alpaca activates the legs only then)
oto         the same entry + one child, a LIMIT (take-profit) or a STOP/STOP_LIMIT (stop-loss) on the other side
oco         two MEMBER legs on the same side, same quantity and time in force: one LIMIT (the head, Alpaca's
            ``type=limit`` with ``take_profit``) and one STOP or STOP_LIMIT (its ``stop_loss``)
==========  ================================================================================================

Anything else (a partial trigger, an OUO list, a trailing leg, a leg on another time in force...) is emulated.
``plan`` returns each leg's ``NativeList`` marker (the head carries the attached legs; an attached leg names its
head) or None when the list is emulated. Like ``core.domain`` this imports nothing but the domain.
"""

from __future__ import annotations

from typing import Literal

from core.contingency import Contingency, LegRole, TriggerMode
from core.domain import NativeLeg, NativeList, OrderRequest, OrderType, TimeInForce, cl_ord_id_for

__all__ = ["plan"]

_ENTRY_TYPES = {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT}
_TIFS = {TimeInForce.DAY, TimeInForce.GTC}
_STOPS = {OrderType.STOP, OrderType.STOP_LIMIT}


def _role(order: OrderRequest) -> Literal["take_profit", "stop_loss"] | None:
    if order.type is OrderType.LIMIT:
        return "take_profit"
    if order.type in _STOPS:
        return "stop_loss"
    return None


def _leg(order: OrderRequest) -> NativeLeg:
    role = _role(order)
    assert role is not None
    return NativeLeg(
        role=role,
        cl_ord_id=cl_ord_id_for(order.order_id),
        side=order.side,
        type=order.type,
        price=order.price,
        stop_price=order.stop_price,
    )


def plan(
    contingency: Contingency,
    trigger: TriggerMode,
    legs: list[tuple[str, LegRole, OrderRequest]],
    native: frozenset[str],
) -> dict[str, NativeList] | None:
    """Each leg's marker when the broker carries this list natively, else None (the coordinator emulates it)."""
    if contingency.value not in native or not legs:
        return None
    if contingency in (Contingency.BRACKET, Contingency.OTO):
        return _with_parent(contingency, trigger, legs)
    if contingency is Contingency.OCO:
        return _oco(legs)
    return None


def _with_parent(
    contingency: Contingency, trigger: TriggerMode, legs: list[tuple[str, LegRole, OrderRequest]]
) -> dict[str, NativeList] | None:
    if trigger is not TriggerMode.FULL:
        return None
    (head_name, head_role, entry), children = legs[0], legs[1:]
    if head_role is not LegRole.PARENT or entry.type not in _ENTRY_TYPES or entry.time_in_force not in _TIFS:
        return None
    expected = 2 if contingency is Contingency.BRACKET else 1
    if len(children) != expected:
        return None
    roles = []
    for _, _, child in children:
        role = _role(child)
        if role is None or child.side is entry.side or child.time_in_force is not entry.time_in_force:
            return None
        if child.qty != entry.qty:
            return None
        roles.append(role)
    if len(set(roles)) != len(roles):
        return None
    order_class: Literal["bracket", "oto"] = "bracket" if contingency is Contingency.BRACKET else "oto"
    head = cl_ord_id_for(entry.order_id)
    out = {head_name: NativeList(order_class=order_class, legs=tuple(_leg(c) for _, _, c in children))}
    for name, _, child in children:
        out[name] = NativeList(order_class=order_class, held_by=head, role=_role(child))
    return out


def _oco(legs: list[tuple[str, LegRole, OrderRequest]]) -> dict[str, NativeList] | None:
    if len(legs) != 2 or any(role is not LegRole.MEMBER for _, role, _ in legs):
        return None
    orders = [o for _, _, o in legs]
    a, b = orders
    if a.side is not b.side or a.qty != b.qty or a.time_in_force is not b.time_in_force or a.time_in_force not in _TIFS:
        return None
    limits = [x for x in legs if x[2].type is OrderType.LIMIT]
    stops = [x for x in legs if x[2].type in _STOPS]
    if len(limits) != 1 or len(stops) != 1:
        return None
    (head_name, _, head), (stop_name, _, stop) = limits[0], stops[0]
    head_id = cl_ord_id_for(head.order_id)
    return {
        head_name: NativeList(order_class="oco", legs=(_leg(stop),)),
        stop_name: NativeList(order_class="oco", held_by=head_id, role="stop_loss"),
    }
