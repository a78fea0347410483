"""Tests for the spending ledger and the worst-case cost bound."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from fractions import Fraction

import pytest

from rlm_desktop.engine.budget import (
    MESSAGE_OVERHEAD_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    CapReached,
    SpendLedger,
    upper_bound_cost,
)
from rlm_desktop.engine.pricing import Price


def test_reserve_refuses_past_the_cap_and_changes_nothing():
    ledger = SpendLedger(1.0)
    first = ledger.reserve(0.6, "a")
    with pytest.raises(CapReached) as info:
        ledger.reserve(0.5, "b")
    assert info.value.label == "b" and info.value.requested == 0.5
    assert info.value.may_fit_later  # 0.0 spent + 0.5 fits once "a" settles low
    assert ledger.reserved == 0.6 and ledger.spent == 0.0
    ledger.settle(first, 0.25)
    assert ledger.spent == 0.25 and ledger.reserved == 0.0
    assert ledger.remaining == 0.75
    ledger.reserve(0.75, "c")  # exactly up to the cap is allowed
    assert ledger.remaining == 0.0
    with pytest.raises(CapReached):
        ledger.reserve(1e-12, "d")


def test_release_as_charged_bills_the_whole_reservation():
    ledger = SpendLedger(2.0)
    reservation = ledger.reserve(0.75, "cancelled call")
    ledger.release_as_charged(reservation)
    assert ledger.spent == 0.75 and ledger.reserved == 0.0 and ledger.open_reservations == 0
    assert reservation.closed


def test_double_settle_is_a_bug_and_is_refused():
    ledger = SpendLedger(None)
    reservation = ledger.reserve(0.1)
    ledger.settle(reservation, 0.05)
    with pytest.raises(RuntimeError, match="already settled"):
        ledger.release_as_charged(reservation)
    assert ledger.spent == 0.05


def test_charge_above_reservation_is_recorded_as_anomaly():
    ledger = SpendLedger(1.0)
    reservation = ledger.reserve(0.1, "liar")
    ledger.settle(reservation, 0.2)
    assert ledger.spent == pytest.approx(0.2)
    [anomaly] = ledger.anomalies
    assert (anomaly.label, anomaly.reserved, anomaly.actual) == ("liar", 0.1, 0.2)


def test_no_cap_never_refuses_and_has_no_remaining():
    ledger = SpendLedger(None)
    for _ in range(3):
        ledger.settle(ledger.reserve(1e6), 1e6)
    assert ledger.spent == 3e6 and ledger.remaining is None


def test_invalid_amounts_are_rejected():
    ledger = SpendLedger(1.0)
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            ledger.reserve(bad)
    with pytest.raises(ValueError):
        SpendLedger(-1.0)
    reservation = ledger.reserve(0.1)
    with pytest.raises(ValueError):
        ledger.settle(reservation, -1.0)
    assert ledger.open_reservations == 1


def test_change_callback_sees_every_change_in_version_order():
    seen = []
    ledger = SpendLedger(1.0, on_change=seen.append)
    reservation = ledger.reserve(0.5, "x")
    ledger.settle(reservation, 0.25)
    assert [s.version for s in seen] == [1, 2]
    assert (seen[0].reserved, seen[0].spent, seen[0].remaining) == (0.5, 0.0, 0.5)
    assert (seen[1].reserved, seen[1].spent, seen[1].remaining, seen[1].calls) == (0.0, 0.25, 0.75, 1)


def test_float_sums_cannot_slip_past_the_cap():
    # Summed as floats, ten times 0.1 is 0.9999999999999999 and would fit a $1 cap, but the
    # float 0.1 is slightly more than a tenth, so ten of them truly exceed $1.
    ledger = SpendLedger(1.0)
    for _ in range(9):
        ledger.settle(ledger.reserve(0.1), 0.1)
    with pytest.raises(CapReached):
        ledger.reserve(0.1)
    assert ledger.spent <= 1.0


def test_upper_bound_counts_utf8_bytes_overheads_and_output():
    price = Price(1.0, 4.0)
    text = "Grüße, 東京 🚀"
    n_bytes = len(text.encode("utf-8"))
    expected_in = n_bytes + MESSAGE_OVERHEAD_TOKENS + REQUEST_OVERHEAD_TOKENS
    assert upper_bound_cost(price, text, 100) == pytest.approx((expected_in * 1.0 + 100 * 4.0) / 1e6)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]
    json_bytes = len(json.dumps(messages, ensure_ascii=False).encode("utf-8"))
    bound = upper_bound_cost(price, messages, 100)
    expected_in = json_bytes + 2 * MESSAGE_OVERHEAD_TOKENS + REQUEST_OVERHEAD_TOKENS
    assert bound == pytest.approx((expected_in + 400) / 1e6)
    # Every byte of content counts at least once, whatever the tokenizer.
    assert bound * 1e6 >= n_bytes + len("be brief") + 400


def test_upper_bound_uses_the_higher_of_cached_and_full_input_rates():
    odd = Price(1.0, 1.0, cached_input_per_m=3.0)
    assert upper_bound_cost(odd, "x", 0) == pytest.approx((1 + 32 + 64) * 3.0 / 1e6)


async def _async_workers(ledger: SpendLedger, rng: random.Random, charges: list, cap: float) -> int:

    async def call(amount: float, outcome: str, waits: int) -> None:
        reservation = ledger.reserve(amount, "task")
        try:
            for _ in range(waits):
                await asyncio.sleep(0)
            if outcome == "fail":
                raise ConnectionError("simulated")
        except (asyncio.CancelledError, ConnectionError):
            charges.append(Fraction(reservation.amount))
            ledger.release_as_charged(reservation)
            raise
        actual = amount * rng.random()
        charges.append(Fraction(actual))
        ledger.settle(reservation, actual)

    tasks = []
    for _ in range(60):
        amount = rng.uniform(0, cap / 4)
        # The task reserves as soon as it runs; a CapReached ends up in its result.
        tasks.append(asyncio.ensure_future(call(amount, rng.choice(["ok", "ok", "fail"]), rng.randrange(5))))
        await asyncio.sleep(0)
        if rng.random() < 0.3:
            rng.choice(tasks).cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return sum(isinstance(r, CapReached) for r in results)


def _thread_worker(ledger: SpendLedger, seed: int, charges: list, cap: float, refused: list) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        amount = rng.uniform(0, cap / 4)
        try:
            reservation = ledger.reserve(amount, "thread")
        except CapReached:
            refused.append(1)
            continue
        if rng.random() < 0.3:
            charges.append(Fraction(reservation.amount))
            ledger.release_as_charged(reservation)
        else:
            actual = amount * rng.random()
            charges.append(Fraction(actual))
            ledger.settle(reservation, actual)


@pytest.mark.parametrize("seed", range(60))
def test_randomized_interleavings_never_pass_the_cap_and_always_balance(seed):
    rng = random.Random(seed)
    cap = rng.uniform(0.01, 5.0)
    violations = []

    def check(snapshot):
        # Runs on whichever thread changed the ledger, like the cost meter.
        if snapshot.spent > cap or Fraction(snapshot.spent) + Fraction(snapshot.reserved) > Fraction(cap) * (
            1 + Fraction(1, 10**12)
        ):
            violations.append(snapshot)

    ledger = SpendLedger(cap, on_change=check)
    charges: list[Fraction] = []
    refused: list[int] = []
    stop_reader = threading.Event()

    def reader():  # the window thread polling the meter
        while not stop_reader.is_set():
            snap = ledger.snapshot()
            if snap.spent > cap:
                violations.append(snap)

    threads = [
        threading.Thread(target=_thread_worker, args=(ledger, seed * 100 + i, charges, cap, refused))
        for i in range(3)
    ]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    refused_async = asyncio.run(_async_workers(ledger, rng, charges, cap))
    for thread in threads:
        thread.join()
    stop_reader.set()
    watcher.join()

    assert violations == []
    assert ledger.open_reservations == 0 and ledger.reserved == 0.0
    assert Fraction(ledger.spent) == Fraction(float(sum(charges, Fraction(0))))
    assert ledger.spent <= cap
    assert ledger.snapshot().calls == len(charges)
    assert ledger.anomalies == []
    # The cap really was contended, otherwise the test proves nothing.
    assert refused_async + len(refused) > 0


def test_a_call_waiting_for_room_wakes_when_a_reservation_closes():
    async def scenario():
        ledger = SpendLedger(cap_usd=1.0)
        first = ledger.reserve(0.9, "in flight")
        since = ledger.closes
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, ledger.settle, first, 0.1)
        started = loop.time()
        await ledger.wait_for_close(since, 5.0)
        woke_after = loop.time() - started
        ledger.reserve(0.5, "now fits")  # the room freed by the settled call
        started = loop.time()
        await ledger.wait_for_close(since, 5.0)  # a close already happened since: no wait at all
        return woke_after, loop.time() - started

    woke_after, second = asyncio.run(scenario())
    assert 0.04 <= woke_after < 1.0 and second < 0.01


def test_waiting_for_room_gives_up_after_its_timeout():
    async def scenario():
        ledger = SpendLedger(cap_usd=1.0)
        ledger.reserve(0.9, "stuck")
        started = asyncio.get_running_loop().time()
        await ledger.wait_for_close(ledger.closes, 0.05)
        return asyncio.get_running_loop().time() - started

    assert 0.04 <= asyncio.run(scenario()) < 1.0


def test_exact_units_add_and_compare_as_fractions_do():
    """The ledger's integer units are exact: sums, differences and comparisons agree with Fraction arithmetic,
    down to the smallest float and up to the largest."""
    import random

    from rlm_desktop.engine.budget import _units, _usd

    rng = random.Random(15)
    values = [0.0, 5e-324, 1.7e308, 0.1, 0.2, 0.3, 3] + [rng.random() * 10 ** rng.randint(-12, 4) for _ in range(3000)]
    for a, b in zip(values, values[1:] + values[:1], strict=True):
        assert _usd(_units(a) + _units(b)) == float(Fraction(a) + Fraction(b))
        assert _usd(_units(a) - _units(b)) == float(Fraction(a) - Fraction(b))
        assert (_units(a) > _units(b)) == (Fraction(a) > Fraction(b))
    assert _units(0.1) + _units(0.2) != _units(0.3)  # kept exact, never rounded to a float on the way
