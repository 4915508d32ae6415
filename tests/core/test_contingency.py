"""The order-list rule table: every contingency × role × leg event × trigger mode (× whether the leg had fills)."""

from __future__ import annotations

from itertools import product

import pytest

from core.contingency import (
    ROLES_OF,
    RULES,
    Action,
    Contingency,
    LegEvent,
    LegRole,
    RuleKey,
    TriggerMode,
    rule,
)

C, R, E, T, A = Contingency, LegRole, LegEvent, TriggerMode, Action
ENDS = (E.REJECT, E.CANCEL, E.EXPIRE)


def every_key() -> list[RuleKey]:
    keys = []
    for c, e, t, filled in product(C, E, T, (False, True)):
        if e.is_fill and not filled:
            continue
        keys += [RuleKey(c, role, e, t, filled) for role in ROLES_OF[c]]
    return keys


def expected(key: RuleKey) -> tuple[Action, ...]:
    """The semantics written out independently of the module (BROKERS.md §9, NautilusTrader's)."""
    c, role, e, t, filled = key
    if role is R.PARENT:
        if e is E.PARTIAL_FILL:
            return (A.FOLLOW_PARENT,) if t is T.PARTIAL else ()
        if e is E.FILL:
            return (A.FOLLOW_PARENT,)
        return (A.FOLLOW_PARENT,) if filled else (A.CANCEL_CHILDREN,)
    if role is R.CHILD:
        return ()
    if role is R.EXIT:
        if e is E.FILL:
            return (A.CANCEL_SIBLINGS,)
        if e is E.PARTIAL_FILL:
            return (A.REDUCE_SIBLINGS,)
        return (A.UNPROTECTED,)
    # MEMBER
    if e is E.FILL or (e is E.PARTIAL_FILL and c is C.OCO):
        return (A.CANCEL_SIBLINGS,)
    if e is E.PARTIAL_FILL:
        return (A.REDUCE_SIBLINGS,)
    return ()


def test_the_table_has_exactly_every_key() -> None:
    assert set(RULES) == set(every_key())
    # 4 contingencies: OTO and bracket 2 roles, OCO and OUO 1; 5 events, 2 modes; fills only with "filled".
    assert len(RULES) == 6 * 2 * (2 * 1 + 3 * 2)


@pytest.mark.parametrize("key", every_key(), ids=lambda k: "-".join(str(v) for v in k))
def test_every_rule_does_what_the_semantics_say(key: RuleKey) -> None:
    found = RULES[key]
    assert found.actions == expected(key)
    assert found.name  # shown on the list as the rule that fired
    assert rule(key.contingency, key.role, key.event, trigger=key.trigger, filled=key.filled) == found


def test_rule_names_tell_rules_apart() -> None:
    by_name: dict[str, set[tuple[Action, ...]]] = {}
    for r in RULES.values():
        by_name.setdefault(r.name, set()).add(r.actions)
    assert all(len(actions) == 1 for actions in by_name.values())


@pytest.mark.parametrize("event", [E.PARTIAL_FILL, E.FILL])
@pytest.mark.parametrize("trigger", list(T))
def test_bracket_exits_linked_oco_cancel_on_any_fill(event: LegEvent, trigger: TriggerMode) -> None:
    found = rule(C.BRACKET, R.EXIT, event, trigger=trigger, filled=True, exits=C.OCO)
    assert found.actions == (A.CANCEL_SIBLINGS,)


@pytest.mark.parametrize("event", ENDS)
@pytest.mark.parametrize("filled", [False, True])
def test_bracket_exits_linked_oco_still_flag_an_unprotected_position(event: LegEvent, filled: bool) -> None:
    assert rule(C.BRACKET, R.EXIT, event, filled=filled, exits=C.OCO).actions == (A.UNPROTECTED,)


def test_a_role_the_contingency_does_not_have_is_not_in_the_table() -> None:
    with pytest.raises(KeyError):
        rule(C.OCO, R.PARENT, E.FILL, filled=True)
    with pytest.raises(KeyError):
        rule(C.OTO, R.PARENT, E.FILL, filled=False)
