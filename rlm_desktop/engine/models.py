"""Chat completions against any OpenAI-compatible server, with our own retries and the spending cap."""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import openai

from rlm_desktop.engine.budget import SpendLedger, upper_bound_cost
from rlm_desktop.engine.pricing import PriceTable, UnknownPrice

Messages = str | Sequence[Mapping[str, object]]


@dataclass(frozen=True)
class Completion:
    """One finished call. `model` is the name asked for (prices and usage are keyed by it);
    `served_model` is what the server says answered. `cost_usd` is None only when no cap
    is set and the model has no price. `latency_s` covers all attempts and waits."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float | None
    latency_s: float
    retries: int
    finish_reason: str | None = None
    served_model: str | None = None
    usage_reported: bool = True


@dataclass(frozen=True)
class CallRetried:
    """Attempt number `attempt` (1 = first) failed for `reason`; the next starts after `delay_s`."""

    label: str
    attempt: int
    reason: str
    delay_s: float


@dataclass(frozen=True)
class UsageMissing:
    """The server sent no token usage, so the call was charged its full reservation."""

    label: str
    model: str
    charged_usd: float


class ModelCallError(Exception):
    """A model call failed for good; the message says what to fix when we know."""

    def __init__(self, message: str, *, model: str | None = None, label: str = "", status: int | None = None):
        super().__init__(message)
        self.model, self.label, self.status = model, label, status


class ModelAuthError(ModelCallError):
    """401/403: the API key was rejected or lacks access."""


class ModelNotFoundError(ModelCallError):
    """404: the server does not know the model (or the base URL is wrong)."""


class ModelRequestError(ModelCallError):
    """Another 4xx: the server refused the request as sent."""


class ModelUnavailableError(ModelCallError):
    """Retries ran out on rate limits, server errors, timeouts or connection failures."""


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_text(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return exc.message


def _rejects_new_token_param(detail: str) -> bool:
    """True for "unsupported/unrecognized max_completion_tokens", not for a value out of range."""
    return "max_completion_tokens" in detail and not _VALUE_COMPLAINT.search(detail)


_VALUE_COMPLAINT = re.compile(r"too large|at most|maximum|must be|less than|greater than", re.IGNORECASE)


class ModelClient:
    """Calls one OpenAI-compatible endpoint for both root and sub models.

    Every attempt first reserves its worst-case cost in the ledger (CapReached is raised
    before anything is sent) and is then settled with the provider's reported usage.
    The SDK's own retries are off so every retry is ours and reported via `on_event`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        price_table: PriceTable,
        ledger: SpendLedger,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        on_event: Callable[[object], None] | None = None,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        retry_after_max_s: float = 60.0,
    ):
        self.base_url = base_url
        self.price_table = price_table
        self.ledger = ledger
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.on_event = on_event
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        # Local servers often accept any key but the SDK insists on one.
        self._client = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "not-needed", max_retries=0, timeout=timeout_s
        )
        self._token_param = "max_completion_tokens"
        self._random = random.Random()

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.aclose()

    async def complete(
        self, model: str, messages: Messages, max_output_tokens: int, label: str = ""
    ) -> Completion:
        """One chat completion; raises CapReached, UnknownPrice, ModelCallError or CancelledError."""
        if max_output_tokens < 1:
            raise ValueError("max_output_tokens must be >= 1")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        price = self.price_table.get(model)
        if price is None and self.ledger.cap_usd is not None:
            raise UnknownPrice(model)
        bound = 0.0 if price is None else upper_bound_cost(price, messages, max_output_tokens)
        started = time.monotonic()
        attempt = retries = 0
        while True:
            attempt += 1
            reservation = self.ledger.reserve(bound, label)  # CapReached: nothing is sent
            try:
                async with asyncio.timeout(self.timeout_s):
                    response = await self._client.chat.completions.create(
                        model=model,
                        messages=list(messages),
                        **{self._token_param: max_output_tokens},
                        timeout=self.timeout_s,
                    )
            except asyncio.CancelledError:
                self.ledger.release_as_charged(reservation)
                raise
            except openai.APIStatusError as exc:
                status, detail = exc.status_code, _error_text(exc)
                # A 4xx is a refusal before the model ran, which providers do not bill; a 5xx
                # or 408 may come after it ran, so those are charged in full.
                if status >= 500 or status == 408:
                    self.ledger.release_as_charged(reservation)
                else:
                    self.ledger.settle(reservation, 0.0)
                if status == 400 and self._uses_new_token_param() and _rejects_new_token_param(detail):
                    self._token_param = "max_tokens"
                    retries += 1
                    self._emit(
                        CallRetried(
                            label, attempt, "server rejected max_completion_tokens; sending max_tokens", 0.0
                        )
                    )
                    continue
                if status not in (408, 409, 429) and status < 500:
                    raise self._status_error(status, detail, model, label) from exc
                reason = f"HTTP {status}: {detail}"
                retry_after = _retry_after_s(exc.response.headers)
            except (openai.APITimeoutError, TimeoutError):
                self.ledger.release_as_charged(reservation)
                reason, retry_after = f"timeout: no answer within {self.timeout_s:g} s", None
            except openai.APIConnectionError as exc:
                self.ledger.release_as_charged(reservation)
                reason, retry_after = f"connection failed: {exc.__cause__ or exc}", None
            except BaseException:
                self.ledger.release_as_charged(reservation)
                raise
            else:
                return self._finish(model, label, price, response, reservation, bound, started, retries)
            if retries >= self.max_retries:
                raise ModelUnavailableError(
                    f"{label or model}: gave up after {attempt} attempts at {self.base_url}: {reason}",
                    model=model,
                    label=label,
                )
            retries += 1
            delay = self._delay(retries, retry_after)
            self._emit(CallRetried(label, attempt, reason, delay))
            await asyncio.sleep(delay)

    def _uses_new_token_param(self) -> bool:
        return self._token_param == "max_completion_tokens"

    def _delay(self, retry_number: int, retry_after_s: float | None) -> float:
        """Exponential backoff with jitter, or the server's Retry-After within our bound."""
        if retry_after_s is not None:
            return min(retry_after_s, self.retry_after_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (retry_number - 1))
        # Jitter spreads out the many parallel sub-calls that hit a rate limit together.
        return self._random.uniform(ceiling / 2, ceiling)

    def _status_error(self, status: int, detail: str, model: str, label: str) -> ModelCallError:
        where = f"{self.base_url} (HTTP {status})"
        if status in (401, 403):
            return ModelAuthError(
                f"the server rejected the API key: {where}: {detail}. Check OPENAI_API_KEY or the key "
                "in settings.",
                model=model,
                label=label,
                status=status,
            )
        if status == 404:
            return ModelNotFoundError(
                f"unknown model {model!r} or wrong base URL: {where}: {detail}",
                model=model,
                label=label,
                status=status,
            )
        return ModelRequestError(
            f"request refused by {where}: {detail}", model=model, label=label, status=status
        )

    def _emit(self, event: object) -> None:
        if self.on_event is not None:
            self.on_event(event)

    async def test_connection(self, model: str | None = None) -> str:
        """A one-line description of the server for a settings dialog; raises ModelCallError.

        Lists the models; if the server has no model list and `model` is given, makes a
        one-token call instead (charged to the ledger like any call).
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                page = await self._client.models.list(timeout=self.timeout_s)
        except openai.APIStatusError as exc:
            if exc.status_code in (404, 405, 501):
                if not model:
                    raise ModelCallError(
                        f"{self.base_url} has no model list (HTTP {exc.status_code}); check the base URL "
                        "(it usually ends in /v1) or name a model to try",
                        status=exc.status_code,
                    ) from exc
                # Reasoning models can fail on a 1-token limit, so allow a few tokens.
                reply = await self.complete(model, "Reply with OK.", 16, label="connection test")
                return f"Connected to {self.base_url}: {model} answered ({reply.prompt_tokens} tokens in)."
            raise self._status_error(
                exc.status_code, _error_text(exc), model or "", "connection test"
            ) from exc
        except (openai.APITimeoutError, TimeoutError) as exc:
            raise ModelCallError(f"no answer from {self.base_url} within {self.timeout_s:g} s") from exc
        except openai.APIConnectionError as exc:
            raise ModelCallError(f"cannot reach {self.base_url}: {exc.__cause__ or exc}") from exc
        names = [m.id for m in page.data]
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        if model and names and model not in names:
            return (
                f"Connected to {self.base_url}, but {model!r} is not among its {len(names)} models: {shown}"
            )
        return f"Connected to {self.base_url}: {len(names)} models ({shown})."

    def _finish(self, model, label, price, response, reservation, bound, started, retries) -> Completion:
        usage = response.usage
        text, finish_reason = "", None
        if response.choices:
            choice = response.choices[0]
            text = (choice.message.content or "") if choice.message else ""
            finish_reason = choice.finish_reason
        if usage is None:
            self.ledger.release_as_charged(reservation)
            cost = None if price is None else bound
            self._emit(UsageMissing(label, model, bound))
            prompt_tokens = completion_tokens = cached_tokens = 0
        else:
            prompt_tokens = usage.prompt_tokens or 0
            completion_tokens = usage.completion_tokens or 0
            details = usage.prompt_tokens_details
            cached_tokens = (details.cached_tokens or 0) if details is not None else 0
            cost = None if price is None else price.cost(prompt_tokens, completion_tokens, cached_tokens)
            self.ledger.settle(reservation, cost or 0.0)
        return Completion(
            text=text,
            model=model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached_tokens,
            cost_usd=cost,
            latency_s=time.monotonic() - started,
            retries=retries,
            finish_reason=finish_reason,
            served_model=response.model,
            usage_reported=usage is not None,
        )
