"""Kraken's request signing against Kraken's documented example, and nonces that only go up, across restarts."""

from __future__ import annotations

import pytest

from brokers.kraken.client import NonceSource, classify, sign

# Kraken's "spot REST authentication" guide (BROKERS.md §3): its example secret, nonce, body, path and signature.
_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
_NONCE = 1616492376594
_BODY = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
_SIGN = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="


def test_signature_matches_krakens_documented_example() -> None:
    assert sign("/0/private/AddOrder", _BODY, _NONCE, _SECRET) == _SIGN


def test_signature_covers_path_body_and_nonce() -> None:
    assert sign("/0/private/CancelOrder", _BODY, _NONCE, _SECRET) != _SIGN
    assert sign("/0/private/AddOrder", _BODY.replace("37500", "37501"), _NONCE, _SECRET) != _SIGN
    assert sign("/0/private/AddOrder", _BODY, _NONCE + 1, _SECRET) != _SIGN


async def test_nonces_strictly_increase_even_when_the_clock_stands_still_or_goes_back() -> None:
    now = [1_000]
    source = NonceSource(clock=lambda: now[0])
    first = await source.next()
    second = await source.next()
    now[0] = 10  # the clock went back
    third = await source.next()
    assert first < second < third


async def test_a_restarted_source_starts_above_the_ceiling_the_last_one_reserved() -> None:
    stored = {"ceiling": 0}

    async def reserve(ceiling: int) -> int:
        stored["ceiling"] = max(stored["ceiling"], ceiling)
        return stored["ceiling"]

    now = [5_000]
    before = NonceSource(floor=stored["ceiling"], reserve=reserve, block=100, clock=lambda: now[0])
    used = [await before.next() for _ in range(250)]  # runs past two reserved blocks
    assert stored["ceiling"] > max(used)
    now[0] = 1  # the restarted process's clock is far behind
    after = NonceSource(floor=stored["ceiling"], reserve=reserve, block=100, clock=lambda: now[0])
    assert await after.next() > max(used)


@pytest.mark.parametrize(
    ("errors", "kind"),
    [
        (["EAPI:Rate limit exceeded"], "throttle"),
        (["EOrder:Rate limit exceeded"], "throttle"),
        (["EService:Throttled: 1700000000"], "throttle"),
        (["EAPI:Invalid nonce"], "nonce"),
        (["EService:Unavailable"], "unknown"),
        (["EService:Busy"], "unknown"),
        (["EGeneral:Internal error"], "unknown"),
        (["EAPI:Invalid key"], "auth"),
        (["EAPI:Invalid signature"], "auth"),
        (["EOrder:Insufficient funds"], "refused"),
        (["EGeneral:Invalid arguments:volume"], "refused"),
        (["EOrder:Unknown order"], "refused"),
    ],
)
def test_errors_are_classified_on_krakens_strings(errors: list[str], kind: str) -> None:
    assert classify(errors) == kind
