"""The hard spending cap: reserve a call's worst-case cost before sending, settle it after.

Why the cap holds: every model call first reserves an upper bound of its cost
(`upper_bound_cost`), and `reserve` refuses when billed + held + still reserved + the new
amount would pass the cap. A call then closes in one of three ways, each at most its
reservation: **billed** (the provider reported usage: its real cost), **held** (the cost is
unknown: a timeout, a reset or a 5xx after sending, or a reply without usage; the whole
reservation stays counted against the cap, shown apart from what was billed) or
**released** (it never reached the server: $0). Amounts are kept as exact fractions so
float rounding cannot let a sum slip past the cap either (whole units of 2**-1100 USD: every float is one).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rlm_desktop.engine.pricing import Price

# Tokens a chat template may add around each message (role markers, separators) and once
# per request (reply priming, a server-side default system prompt such as Llama 3.1's
# date header). Real templates use about 3-30; these are generous on purpose.
MESSAGE_OVERHEAD_TOKENS = 32
REQUEST_OVERHEAD_TOKENS = 64


def upper_bound_cost(
    price: Price, prompt_text_or_messages: str | Sequence[Mapping[str, object]], max_output_tokens: int
) -> float:
    """A cost no text-only chat call can exceed, in USD.

    Input: byte-level BPE tokenizers (tiktoken's o200k/cl100k, Llama 3, Qwen) and
    SentencePiece with byte fallback never make a token out of less than one byte, so the
    UTF-8 length of everything sent bounds the input tokens. We measure the JSON of the
    messages (keys, roles, quoting and escapes included, which only adds) plus a per-message
    and per-request overhead for template tokens. Input is priced at the higher of the full
    and cached rates.
    Output: the client always sends max_completion_tokens (or max_tokens), which caps
    reasoning plus visible output tokens, so output cannot exceed max_output_tokens.
    A server that ignores the limit is caught at settle time and recorded as an anomaly.
    Images and audio are not bounded by this (the engine sends text only).
    """
    if max_output_tokens < 0:
        raise ValueError("max_output_tokens must be >= 0")
    if isinstance(prompt_text_or_messages, str):
        sent_bytes = len(prompt_text_or_messages.encode("utf-8"))
        messages = 1
    else:
        sent_bytes = len(json.dumps(list(prompt_text_or_messages), ensure_ascii=False).encode("utf-8"))
        messages = len(prompt_text_or_messages)
    input_tokens = sent_bytes + messages * MESSAGE_OVERHEAD_TOKENS + REQUEST_OVERHEAD_TOKENS
    input_rate = max(price.input_per_m, price.cached_rate)
    return (input_tokens * input_rate + max_output_tokens * price.output_per_m) / 1_000_000


# Amounts are kept exactly, as whole multiples of 2**-1100 USD: every float is one (the smallest is 2**-1074), so
# sums and comparisons are exact, as with fractions, and cost a few integer operations instead of a gcd each.
_SCALE_BITS = 1100
_ONE = 1 << _SCALE_BITS


def _units(amount: float) -> int:
    """`amount` USD exactly, in units of 2**-1100 USD."""
    numerator, denominator = amount.as_integer_ratio()
    if _ONE % denominator:  # only a binary fraction (every float and int) is a whole number of units
        raise ValueError(f"amount must be a float, got {amount!r}")
    return numerator * (_ONE // denominator)


def _usd(units: int) -> float:
    return units / _ONE  # integer true division rounds correctly, as float() of the exact fraction


class CapReached(Exception):
    """Reserving this call's worst-case cost would pass the spending cap; nothing was sent."""

    def __init__(self, cap: float, spent: float, reserved: float, requested: float, label: str):
        self.cap, self.spent, self.reserved, self.requested, self.label = (
            cap,
            spent,
            reserved,
            requested,
            label,
        )
        super().__init__(
            f"spending cap ${cap:.4f} reached: spent ${spent:.4f}, ${reserved:.4f} reserved by calls "
            f"in flight, {label or 'this call'} needs up to ${requested:.4f}"
        )

    @property
    def may_fit_later(self) -> bool:
        """True if the call would fit once in-flight calls settle below their reservations."""
        return self.spent + self.requested <= self.cap


@dataclass
class Reservation:
    """Money set aside for one call attempt until it is settled."""

    id: int
    label: str
    amount: float
    _exact: int = field(repr=False)  # the amount in exact units (_units)
    closed: bool = False


@dataclass(frozen=True)
class Anomaly:
    """A call charged more than its reservation (a server ignoring the output limit)."""

    label: str
    reserved: float
    actual: float


@dataclass(frozen=True)
class LedgerSnapshot:
    """A consistent view for the cost meter; `version` increases with every change."""

    version: int
    cap: float | None
    spent: float  # billed + held: what the cap counts
    reserved: float  # calls in flight
    remaining: float | None
    calls: int
    billed: float = 0.0  # from usage the provider reported
    held: float = 0.0  # reservations of calls whose cost is unknown
    held_estimate: float = 0.0  # what those held calls probably cost (tokenizer estimate), for display


class SpendLedger:
    """Thread-safe record of money spent and reserved against an optional hard cap.

    The engine uses it from its asyncio loop while the window reads it from the GUI thread.
    `on_change(snapshot)` is called after every change, outside the lock, from whichever
    thread made the change; drop snapshots whose version is older than one already shown.
    """

    def __init__(self, cap_usd: float | None, on_change: Callable[[LedgerSnapshot], None] | None = None):
        if cap_usd is not None and (not math.isfinite(cap_usd) or cap_usd < 0):
            raise ValueError(f"cap must be a finite amount >= 0, got {cap_usd!r}")
        self._cap = None if cap_usd is None else _units(cap_usd)
        self._cap_usd = cap_usd
        self._lock = threading.Lock()
        self._billed = 0
        self._held = 0
        self._held_estimate = 0
        self._reserved = 0
        self._open: dict[int, Reservation] = {}
        self._ids = itertools.count(1)
        self._version = 0
        self._calls = 0
        self._anomalies: list[Anomaly] = []
        self._closes = 0
        self._close_waiters: list[Callable[[], None]] = []
        self.on_change = on_change

    @property
    def cap_usd(self) -> float | None:
        return self._cap_usd

    @property
    def closes(self) -> int:
        """How many reservations have closed so far (settled, held or released)."""
        with self._lock:
            return self._closes

    async def wait_for_close(self, since: int, timeout_s: float) -> None:
        """Return once a reservation has closed after `since` (a `closes` count), or after `timeout_s`.

        A call refused by the cap while others are in flight waits here for room instead of polling.
        """
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        def wake_threadsafe() -> None:  # reservations may close on another thread
            loop.call_soon_threadsafe(wake)

        with self._lock:
            if self._closes != since:
                return
            self._close_waiters.append(wake_threadsafe)
        try:
            await asyncio.wait_for(woken, timeout_s)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                if wake_threadsafe in self._close_waiters:
                    self._close_waiters.remove(wake_threadsafe)

    @property
    def spent(self) -> float:
        """Billed + held: what the cap counts."""
        with self._lock:
            return _usd(self._billed + self._held)

    @property
    def billed(self) -> float:
        with self._lock:
            return _usd(self._billed)

    @property
    def held(self) -> float:
        with self._lock:
            return _usd(self._held)

    @property
    def reserved(self) -> float:
        with self._lock:
            return _usd(self._reserved)

    @property
    def remaining(self) -> float | None:
        """Cap minus spent minus reserved (never below 0), or None without a cap."""
        with self._lock:
            return self._remaining()

    @property
    def anomalies(self) -> list[Anomaly]:
        with self._lock:
            return list(self._anomalies)

    @property
    def open_reservations(self) -> int:
        with self._lock:
            return len(self._open)

    def snapshot(self) -> LedgerSnapshot:
        with self._lock:
            return self._snapshot()

    def reserve(self, amount: float, label: str = "") -> Reservation:
        """Set aside `amount` USD or raise CapReached if it would pass the cap."""
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"reservation must be a finite amount >= 0, got {amount!r}")
        exact = _units(amount)
        with self._lock:
            spent = self._billed + self._held
            if self._cap is not None and spent + self._reserved + exact > self._cap:
                raise CapReached(_usd(self._cap), _usd(spent), _usd(self._reserved), amount, label)
            reservation = Reservation(next(self._ids), label, amount, exact)
            self._open[reservation.id] = reservation
            self._reserved += exact
            snap = self._changed()
        self._notify(snap)
        return reservation

    def settle(self, reservation: Reservation, actual_cost: float) -> None:
        """Close a reservation charging what the call really cost.

        A cost above the reservation is still charged (it was billed) and recorded in
        `anomalies`; with a correct upper bound it cannot happen.
        """
        if not math.isfinite(actual_cost) or actual_cost < 0:
            raise ValueError(f"cost must be a finite amount >= 0, got {actual_cost!r}")
        self._close(reservation, _units(actual_cost))

    def hold(self, reservation: Reservation, estimate: float | None = None) -> None:
        """Close a call whose cost is unknown at its full reservation, counted against the cap as *held*.

        `estimate` (what it probably cost, from a tokenizer) is kept for display only.
        """
        if estimate is not None and (not math.isfinite(estimate) or estimate < 0):
            raise ValueError(f"estimate must be a finite amount >= 0, got {estimate!r}")
        self._close(reservation, reservation._exact, held=True, estimate=estimate)

    def release(self, reservation: Reservation) -> None:
        """Close a call that never reached the server (connection refused, DNS failure): it cost nothing."""
        self._close(reservation, 0, counted=False)

    # The older name: a cancelled or failed call whose cost is unknown is held, never dropped.
    release_as_charged = hold

    def _close(
        self,
        reservation: Reservation,
        charge: int,
        *,
        held: bool = False,
        estimate: float | None = None,
        counted: bool = True,
    ) -> None:
        with self._lock:
            if self._open.pop(reservation.id, None) is None:
                raise RuntimeError(f"reservation {reservation.id} ({reservation.label}) is already settled")
            reservation.closed = True
            self._reserved -= reservation._exact
            if held:
                self._held += charge
                self._held_estimate += min(charge, _units(estimate)) if estimate is not None else charge
            else:
                self._billed += charge
            if counted:
                self._calls += 1
            if charge > reservation._exact:
                self._anomalies.append(Anomaly(reservation.label, reservation.amount, _usd(charge)))
            self._closes += 1
            waiters, self._close_waiters = self._close_waiters, []
            snap = self._changed()
        for wake in waiters:
            wake()
        self._notify(snap)

    def _remaining(self) -> float | None:
        if self._cap is None:
            return None
        return max(0.0, _usd(self._cap - self._billed - self._held - self._reserved))

    def _snapshot(self) -> LedgerSnapshot:
        return LedgerSnapshot(
            self._version,
            self._cap_usd,
            _usd(self._billed + self._held),
            _usd(self._reserved),
            self._remaining(),
            self._calls,
            _usd(self._billed),
            _usd(self._held),
            _usd(self._held_estimate),
        )

    def _changed(self) -> LedgerSnapshot:
        self._version += 1
        return self._snapshot()

    def _notify(self, snap: LedgerSnapshot) -> None:
        callback = self.on_change
        if callback is not None:
            callback(snap)
