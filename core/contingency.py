"""The rules of order lists: what a leg's event does to the other legs (one table, like ``ORDER_TRANSITIONS``).

An order list (``core.orderlist``) has a contingency: **OTO** (a parent whose fills release its children), **OCO**
(any fill of one leg cancels the others), **OUO** (a fill of one reduces the others by as much) and the
**bracket** (an entry OTO a take-profit and a stop-loss, the two exits linked OUO, or OCO when the list asks). The
semantics are NautilusTrader's (``/work/shared/docs/BROKERS.md`` §9):

* OTO children are released by the parent's fills, on its first fill (``TriggerMode.PARTIAL``) or once it is
  completely filled (``TriggerMode.FULL``), and are sized to the parent's filled quantity;
* a parent that ends unfilled cancels its children; one that ends partly filled keeps its children, sized to
  what filled (released then, if they were waiting for the full fill);
* a protective leg (a bracket's exit) that ends without filling while the position is open leaves the position
  unprotected: the list is flagged (and flattened when it asks for it).

``RULES`` maps ``(contingency, role, event, trigger mode, leg had fills)`` to a ``Rule``: its name (shown on the
list as the rule that fired) and its actions, which the coordinator carries out (``core.orderlist.ListBook``).
Every key exists (``tests/core/test_contingency.py`` enumerates them); ``rule`` looks one up.
"""

from __future__ import annotations

from enum import StrEnum
from itertools import product
from typing import Final, NamedTuple

__all__ = [
    "ROLES_OF",
    "RULES",
    "Action",
    "Contingency",
    "LegEvent",
    "LegRole",
    "Rule",
    "RuleKey",
    "TriggerMode",
    "rule",
]


class Contingency(StrEnum):
    """How the legs of a list depend on each other."""

    OTO = "OTO"
    OCO = "OCO"
    OUO = "OUO"
    BRACKET = "BRACKET"


class LegRole(StrEnum):
    """A leg's part in its list."""

    #: The parent of an OTO, the entry of a bracket: its fills release the other legs.
    PARENT = "PARENT"
    #: A child of an OTO: released by the parent's fills, not linked to the other children.
    CHILD = "CHILD"
    #: A bracket's take-profit or stop-loss: a child of the entry, linked to the other exit, protecting the position.
    EXIT = "EXIT"
    #: A leg of an OCO or OUO list: linked to every other leg.
    MEMBER = "MEMBER"


#: The roles a contingency's legs have.
ROLES_OF: Final[dict[Contingency, tuple[LegRole, ...]]] = {
    Contingency.OTO: (LegRole.PARENT, LegRole.CHILD),
    Contingency.OCO: (LegRole.MEMBER,),
    Contingency.OUO: (LegRole.MEMBER,),
    Contingency.BRACKET: (LegRole.PARENT, LegRole.EXIT),
}


class LegEvent(StrEnum):
    """What happened to a leg's order (a risk denial counts as a reject: the order never worked)."""

    PARTIAL_FILL = "PARTIAL_FILL"
    FILL = "FILL"
    REJECT = "REJECT"
    CANCEL = "CANCEL"
    EXPIRE = "EXPIRE"

    @property
    def is_fill(self) -> bool:
        """A fill, partial or complete."""
        return self in (LegEvent.PARTIAL_FILL, LegEvent.FILL)


class TriggerMode(StrEnum):
    """When an OTO parent releases its children: on its first fill, or once it is completely filled."""

    PARTIAL = "PARTIAL"
    FULL = "FULL"


class Action(StrEnum):
    """What the coordinator does after a rule fires."""

    #: Children follow the parent's filled quantity: waiting ones are released sized to it, released ones are
    #: resized to it.
    FOLLOW_PARENT = "FOLLOW_PARENT"
    #: Children are dropped: waiting ones are never sent, working ones are canceled.
    CANCEL_CHILDREN = "CANCEL_CHILDREN"
    #: Every other linked leg is canceled (OCO).
    CANCEL_SIBLINGS = "CANCEL_SIBLINGS"
    #: Every other linked leg is reduced by the leg's new fill; one reduced to nothing is canceled (OUO).
    REDUCE_SIBLINGS = "REDUCE_SIBLINGS"
    #: The leg protected an open position and no longer does: flag the list (and flatten when it asks).
    UNPROTECTED = "UNPROTECTED"


class Rule(NamedTuple):
    """A rule of the table: its name and what it does."""

    name: str
    actions: tuple[Action, ...] = ()


class RuleKey(NamedTuple):
    """What a rule is looked up by."""

    contingency: Contingency
    role: LegRole
    event: LegEvent
    trigger: TriggerMode
    #: Whether the leg has filled anything (with this event): a parent that ends partly filled keeps its children.
    filled: bool


_A = Action
_E = LegEvent
_ENDS = (_E.REJECT, _E.CANCEL, _E.EXPIRE)


def _parent(event: LegEvent, trigger: TriggerMode, filled: bool) -> Rule:
    if event is _E.PARTIAL_FILL:
        if trigger is TriggerMode.PARTIAL:
            return Rule("parent-partly-filled:children-follow", (_A.FOLLOW_PARENT,))
        return Rule("parent-partly-filled:children-wait-for-full-fill")
    if event is _E.FILL:
        return Rule("parent-filled:children-follow", (_A.FOLLOW_PARENT,))
    if filled:
        return Rule(f"parent-{event.value.lower()}-partly-filled:children-sized-to-fills", (_A.FOLLOW_PARENT,))
    return Rule(f"parent-{event.value.lower()}-unfilled:children-canceled", (_A.CANCEL_CHILDREN,))


def _linked(linkage: Contingency, event: LegEvent, prefix: str) -> Rule:
    if event is _E.FILL:
        return Rule(f"{prefix}filled:others-canceled", (_A.CANCEL_SIBLINGS,))
    if event is _E.PARTIAL_FILL:
        if linkage is Contingency.OCO:
            return Rule(f"{prefix}partly-filled:others-canceled", (_A.CANCEL_SIBLINGS,))
        return Rule(f"{prefix}partly-filled:others-reduced", (_A.REDUCE_SIBLINGS,))
    return Rule(f"{prefix}{event.value.lower()}:others-work-on")


def _build() -> dict[RuleKey, Rule]:
    table: dict[RuleKey, Rule] = {}
    for contingency, event, trigger, filled in product(Contingency, LegEvent, TriggerMode, (False, True)):
        if event.is_fill and not filled:
            continue  # a fill always leaves the leg with fills
        for role in ROLES_OF[contingency]:
            key = RuleKey(contingency, role, event, trigger, filled)
            if role is LegRole.PARENT:
                table[key] = _parent(event, trigger, filled)
            elif role is LegRole.CHILD:
                # An OTO child stands alone once released.
                table[key] = Rule(f"child-{event.value.lower()}:no-effect")
            elif role is LegRole.MEMBER:
                table[key] = _linked(contingency, event, f"{contingency.value.lower()}-leg-")
            else:  # EXIT: linked to the other exit (OUO by default), and protective
                base = _linked(Contingency.OUO, event, "exit-")
                if event in _ENDS:
                    base = Rule(f"exit-{event.value.lower()}:position-unprotected", (_A.UNPROTECTED,))
                table[key] = base
    return table


#: Every rule: ``(contingency, role, event, trigger, filled) -> Rule``. Bracket exits are linked OUO here;
#: a bracket whose exits are linked OCO takes ``rule(..., exits=Contingency.OCO)``.
RULES: Final[dict[RuleKey, Rule]] = _build()


def rule(
    contingency: Contingency,
    role: LegRole,
    event: LegEvent,
    *,
    trigger: TriggerMode = TriggerMode.FULL,
    filled: bool,
    exits: Contingency = Contingency.OUO,
) -> Rule:
    """The rule for ``event`` on a leg of ``role`` in a list of ``contingency``.

    ``exits``: how a bracket's exits are linked (OUO, the default, or OCO). Raises ``KeyError`` for a role the
    contingency does not have (and for a fill with ``filled`` false).
    """
    if contingency is Contingency.BRACKET and role is LegRole.EXIT and exits is Contingency.OCO and event.is_fill:
        return _linked(Contingency.OCO, event, "exit-")
    return RULES[RuleKey(contingency, role, event, trigger, filled)]
