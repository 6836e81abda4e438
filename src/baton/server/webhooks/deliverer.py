"""The outbound webhook deliverer: event log → delivery rows → signed POSTs, with back-off.

One background thread runs an asyncio loop that, every `poll_interval` (or at once after
`wake()`):

1. fans out: reads the event log after the shared `webhooks` cursor (an `EventTail`, so a
   late commit on PostgreSQL is never skipped) and hands each batch to the store, which
   inserts the deliveries and moves the cursor in one transaction. Any number of deliverers
   may run on one store: a batch another one fanned out first is dropped here and the tail
   starts again from the stored cursor;
2. claims due deliveries with a lease and POSTs each event, as the JSON CloudEvent the API
   shows, signed per Standard Webhooks. 2xx: DELIVERED. Anything else (a status, a timeout,
   a refused connection): PENDING again after the retry policy's back-off, until the
   attempts are used up: FAILED, kept with the last status and error for an operator to
   redeliver.

A deliverer that dies holding claims loses nothing: each claim's lease runs out and another
deliverer (or this one, started again) takes the delivery. A receiver may therefore see a
message twice; the `webhook-id` header (the event's id) is the same every time, for it to
drop repeats. Concurrency is bounded overall (`concurrency`) and per subscription
(`per_subscription`), so one slow URL never holds up the others.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections import Counter
from typing import TYPE_CHECKING

import httpx

from baton.core.ids import new_id
from baton.core.retry import Retry
from baton.observability import metrics
from baton.observability.logging import get_logger
from baton.server.views import event_view
from baton.server.webhooks.signing import signed_headers
from baton.store.tail import EventTail
from baton.store.webhooks import FAN_OUT_CURSOR, ClaimedDelivery, DeliveryStatus

if TYPE_CHECKING:
    from baton.engine.app import App

log = get_logger("baton.webhooks")

DEFAULT_RETRY = Retry(max_attempts=8, initial=1, backoff=2, max_delay=300, jitter=True)
USER_AGENT = "baton-webhooks/1"
_ERROR_TEXT = 500  # characters of a failed answer's body kept with the delivery


class WebhookDeliverer:
    """Delivers the store's outbound webhooks while started: `start()`, then `stop()`.

    - `timeout`: seconds one POST may take, all in;
    - `retry`: the back-off between attempts and how many there are (`max_attempts`);
    - `owner`: the name its claims carry (unique per deliverer; one is made up);
    - `lease`: seconds a claim is held before another deliverer may take it (by default
      long enough for a POST that waits for a free slot and then times out);
    - `concurrency` / `per_subscription`: POSTs in flight at once, overall and per URL.
    """

    def __init__(
        self,
        app: App,
        *,
        poll_interval: float = 0.2,
        timeout: float = 10.0,
        retry: Retry = DEFAULT_RETRY,
        owner: str | None = None,
        lease: float | None = None,
        concurrency: int = 32,
        per_subscription: int = 4,
        batch: int = 500,
    ) -> None:
        if poll_interval <= 0 or timeout <= 0:
            raise ValueError("poll_interval and timeout must be > 0")
        if concurrency < 1 or per_subscription < 1 or batch < 1:
            raise ValueError("concurrency, per_subscription and batch must be >= 1")
        self.app = app
        self.store = app.store
        self.clock = app.clock
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.retry = retry
        self.owner = owner or f"webhooks@{socket.gethostname()}:{os.getpid()}:{new_id()[-8:]}"
        self.lease = lease if lease is not None else 2 * timeout + 30.0
        if self.lease <= 0:
            raise ValueError("lease must be > 0")
        self.concurrency = concurrency
        self.per_subscription = per_subscription
        self.batch = batch
        self._tail: EventTail | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._stopping = False
        self._grace = 10.0
        self._ready = threading.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._busy: Counter[str] = Counter()
        self._slots: dict[str, asyncio.Semaphore] = {}

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> WebhookDeliverer:
        """Start delivering in a background thread (a daemon); returns self."""
        if self._thread is not None:
            raise RuntimeError("this WebhookDeliverer has been started already")
        self._thread = threading.Thread(target=self._run, name="baton-webhooks", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; let the POSTs under way finish for up to `timeout` seconds, then
        abandon the rest (their claims run out and are taken again). Idempotent."""
        thread = self._thread
        if thread is None or self._stopping:
            if thread is not None:
                thread.join(timeout + 5)
            return
        self._grace = max(0.0, timeout)
        self._stopping = True
        self.wake()
        thread.join(timeout + 5)

    def wake(self) -> None:
        """Look for work now rather than at the next poll (from any thread)."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wakeup.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def __enter__(self) -> WebhookDeliverer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception:
            log.error("webhook deliverer stopped by an error", exc_info=True)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=8)
        async with httpx.AsyncClient(
            timeout=self.timeout, limits=limits, follow_redirects=False
        ) as client:
            self._ready.set()
            while not self._stopping:
                try:
                    await asyncio.to_thread(self._fan_out)
                    await self._claim(client)
                except Exception as exc:  # the store is down, ...: try again at the next poll
                    log.warning("webhook poll failed", error=f"{type(exc).__name__}: {exc}")
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_interval)
                except TimeoutError:
                    pass
                self._wakeup.clear()
            await self._drain()

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        _, late = await asyncio.wait(set(self._in_flight), timeout=self._grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
            log.info("webhook deliveries abandoned at stop", count=len(late))

    # -- fan-out ---------------------------------------------------------------------------
    def _fan_out(self) -> None:
        """Turn the events logged since the cursor into deliveries (in a worker thread)."""
        if not any(s.active for s in self.store.list_webhooks()):
            self._tail = None  # nothing is fanned out; the cursor is moved on by the next one
            return
        while not self._stopping:
            if self._tail is None:
                self._tail = EventTail(self.store, self.store.get_cursor(FAN_OUT_CURSOR) or 0)
            tail = self._tail
            after = tail.position
            try:
                events = tail.read(self.batch)
                if not events:
                    return
                inserted = self.store.fan_out_webhooks(
                    FAN_OUT_CURSOR, after, tail.position, events, self.clock.now()
                ).result()
            except BaseException:
                self._tail = None  # read the cursor again next time
                raise
            if inserted is None:  # another deliverer fanned these out first
                self._tail = None
                return
            if len(events) < self.batch:
                return

    # -- deliveries --------------------------------------------------------------------------
    async def _claim(self, client: httpx.AsyncClient) -> None:
        free = self.concurrency - len(self._in_flight)
        if free <= 0 or self._stopping:
            return
        claimed = await asyncio.to_thread(self._claim_due, free, dict(self._busy))
        for item in claimed:
            sub = item.delivery.subscription_id
            self._busy[sub] += 1
            task = asyncio.create_task(self._deliver(client, item))
            self._in_flight.add(task)
            task.add_done_callback(lambda t, sub=sub: self._done(t, sub))

    def _claim_due(self, free: int, busy: dict[str, int]) -> list[ClaimedDelivery]:
        now = self.clock.now()
        due = self.store.next_webhook_due()  # a read: an idle poll writes nothing
        if due is None or due > now:
            return []
        return self.store.claim_webhook_deliveries(
            self.owner, free, now, self.lease, per_subscription=self.per_subscription, busy=busy
        ).result()

    def _done(self, task: asyncio.Task[None], subscription_id: str) -> None:
        self._in_flight.discard(task)
        self._busy[subscription_id] -= 1
        if self._busy[subscription_id] <= 0:
            del self._busy[subscription_id]
            self._slots.pop(subscription_id, None)
        if not self._stopping and self._wakeup is not None:
            self._wakeup.set()  # a slot is free: claim more now

    async def _deliver(self, client: httpx.AsyncClient, item: ClaimedDelivery) -> None:
        slot = self._slots.setdefault(
            item.delivery.subscription_id, asyncio.Semaphore(self.per_subscription)
        )
        async with slot:
            status, error = await self._post(client, item)
        await asyncio.to_thread(self._settle, item, status, error)

    async def _post(
        self, client: httpx.AsyncClient, item: ClaimedDelivery
    ) -> tuple[int | None, str | None]:
        """Send one attempt: (the answer's status or None, an error text or None if 2xx)."""
        event = item.event
        if event is None:
            return None, "the event is no longer in the event log"
        body = json.dumps(event_view(event).model_dump(), separators=(",", ":"), ensure_ascii=False)
        headers = signed_headers(item.secret, event.id, body)
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        try:
            async with asyncio.timeout(self.timeout):
                async with client.stream(
                    "POST", item.url, content=body.encode(), headers=headers
                ) as answer:
                    if answer.is_success:
                        return answer.status_code, None
                    text = await _start_of(answer)
                    reason = f"HTTP {answer.status_code}" + (f": {text}" if text else "")
                    return answer.status_code, reason
        except (TimeoutError, httpx.TimeoutException):
            return None, f"no answer within {self.timeout:g}s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def _settle(self, item: ClaimedDelivery, status: int | None, error: str | None) -> None:
        delivery = item.delivery
        now = self.clock.now()
        retry_at = None
        if error is None:
            outcome, result = DeliveryStatus.DELIVERED, "delivered"
        elif delivery.attempts >= self.retry.max_attempts or item.event is None:
            outcome, result = DeliveryStatus.FAILED, "failed"
        else:
            outcome, result = DeliveryStatus.PENDING, "retrying"
            retry_at = now + self.retry.delay(delivery.attempts)
        try:
            kept = self.store.settle_webhook_delivery(
                delivery.id,
                self.owner,
                delivery.attempts,
                now,
                outcome,
                retry_at=retry_at,
                last_status=status,
                last_error=error,
            ).result()
        except Exception as exc:  # the claim runs out and the delivery is tried again
            log.warning("webhook outcome not saved", delivery_id=delivery.id, error=f"{exc}")
            return
        if not kept:
            log.info("webhook claim lost before its outcome was saved", delivery_id=delivery.id)
            return
        metrics.webhook_delivery(result)
        if error is not None:
            log.info(
                "webhook attempt failed",
                delivery_id=delivery.id,
                url=item.url,
                attempt=delivery.attempts,
                outcome=str(outcome),
                error=error,
            )


async def _start_of(answer: httpx.Response) -> str:
    """The first characters of a failed answer's body (the rest is not read)."""
    taken = b""
    async for chunk in answer.aiter_bytes():
        taken += chunk
        if len(taken) >= _ERROR_TEXT:
            break
    return taken[:_ERROR_TEXT].decode("utf-8", "replace").strip()
