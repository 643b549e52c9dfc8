"""The delivery loop, for either upstream: claim from the outbox, pack, POST, settle every item.

One feeder claims due items, dead-letters those the upstream would no longer take, packs the rest
into requests and queues them; `max_in_flight` workers send them under a token bucket of
`rate_limit` items/s. What is contract-specific (which items are too old, how claims become a
request, its auth, how an answer reads) is the `Wire` (`edge.delivery.wire`), which the caller
gives: the configured upstream's (`edge.upstreams`). Each answer becomes a `Verdict`
(`edge.delivery.verdict` draws the kinds), and the sender acts on its kind, the same for both
contracts: delivered; partly dead-lettered; split until each bad item is alone; paused,
probed with one item every `pause_retry` s, every waiting item due at once when a request gets
through; or all sending held for Retry-After or the backoff, and retried until the upstream's
data-age limit, when the items are dead-lettered as expired.

When the store cannot record that items were delivered (a full disk), nothing more is claimed
and the acknowledgement is tried again until the store takes it: sending on would send each item
again once its lease ran out.

Nothing here raises to the caller: every outcome is a state in the store. Secrets and upstream
messages (which can quote the data sent) never reach the log unredacted; the upstream's trace id
(contract B) goes with every failure logged or recorded. See docs/architecture.md#delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import logging
import time
import urllib.request
from collections.abc import Callable, Sequence
from http.client import HTTPResponse
from typing import Final, assert_never

import httpx
from prometheus_client import Counter

from edge import __version__
from edge.delivery.backoff import backoff
from edge.delivery.ratelimit import SharedBucket, budget_name
from edge.delivery.verdict import MESSAGE_CHARS, Kind, Verdict, redact
from edge.delivery.wire import MAX_AGE_SECONDS, Request, Wire, WireFactory
from edge.metrics import Metrics
from edge.settings import Settings
from edge.store import Store
from edge.store.errors import StoreError
from edge.store.outbox import Claims
from edge.store.values import REJECTED, DeadLetter, Paused

log = logging.getLogger("rokt_edge.sender")

HOUSEKEEPING_SECONDS: Final = 30.0
PRUNE_SECONDS: Final = 3600.0
ACK_RETRY_CAP_SECONDS: Final = 5.0  # between tries of an acknowledgement the store refused


class IgnoredCookies(http.cookiejar.CookieJar):
    """The upstream's cookies, never read: neither API needs any, and parsing every answer's
    headers for them was 7% of the event loop's time per request."""

    def extract_cookies(self, response: HTTPResponse, request: urllib.request.Request) -> None:
        pass


class Sender:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        wire: WireFactory,
        *,
        metrics: Metrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.wire: Wire = wire(settings, clock)  # the upstream's (`edge.upstreams`)
        self.delivered = 0  # items settled as delivered by this sender (tests, benchmarks)
        self.paused: Paused | None = None
        self.running = False
        self._transport = transport
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()  # new items were put
        self._changed = asyncio.Event()  # replaced at each change of state (see _signal)
        # Room for four claims' worth of requests: the next claim is made while the last ones'
        # requests are still being sent, so the workers do not wait for the store even when a
        # claim waits behind a commit (with two, they found the queue empty now and then).
        ahead = max(settings.max_in_flight, 4 * -(-settings.claim_size // 100))
        self._queue: asyncio.Queue[Request | None] = asyncio.Queue(ahead)
        self._room = asyncio.Event()  # the queue has room (see _enqueue)
        self._room.set()
        self._bucket = SharedBucket(store, budget_name(settings), settings.rate_limit)
        self._hold_until = 0.0  # no request starts before (429, upstream trouble)
        self._probe_at = 0.0  # while paused: the next probe is not sent before
        self._failures = 0  # in a row, for the backoff
        self._acks: list[int] = []  # delivered, not yet acknowledged to the store
        self._acking = False  # an _ack_delivered task is running
        self._unrecorded = False  # the store refused an ack: nothing is claimed until it takes it
        self._client: httpx.AsyncClient | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._delivered_counters = {
            dry_run: self.metrics.delivered.labels(dry_run=str(dry_run).lower())
            for dry_run in (False, True)
        }
        self._response_counters: dict[str, Counter] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Deliver until `stop()`; the app's lifespan (or `rokt-edge deliver`) owns this task."""
        self._stopping.clear()
        await self.store.set_paused(None)  # a pause left by an earlier run; a 401 says it again
        async with self._make_client() as client:
            self._client = client
            if not self.settings.dry_run:
                self.wire.bind(client)
            self.running = True
            try:
                async with asyncio.TaskGroup() as tasks:
                    self._tasks = tasks
                    tasks.create_task(self._housekeeping())
                    for _ in range(self.settings.max_in_flight):
                        tasks.create_task(self._worker())
                    await self._feed()
                    for _ in range(self.settings.max_in_flight):
                        await self._queue.put(None)
            finally:
                self.running = False
                self._client = None
                self._tasks = None

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._signal()

    def notify(self) -> None:
        """New items were put: look now rather than at the next poll."""
        self._wake.set()

    def _make_client(self) -> httpx.AsyncClient:
        settings = self.settings
        return httpx.AsyncClient(
            base_url=settings.upstream_url,
            auth=self.wire.client_auth,
            headers={"Content-Type": "application/json", "User-Agent": f"rokt-edge/{__version__}"},
            timeout=httpx.Timeout(
                settings.request_timeout, connect=min(10.0, settings.request_timeout)
            ),
            limits=httpx.Limits(
                max_connections=settings.max_in_flight,
                max_keepalive_connections=settings.max_in_flight,
            ),
            cookies=IgnoredCookies(),
            transport=self._transport,
        )

    # -- the feeder --------------------------------------------------------------------------

    async def _feed(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._unrecorded:  # what it claimed now could be sent twice: wait for the acks
                    await self._nap(None)
                elif self.paused is not None:
                    await self._probe()
                elif (wait := self._hold_until - self.clock()) > 0:
                    await self._nap(wait)  # a resume lifts the hold
                else:
                    await self._claim()
            except StoreError as error:
                log.error("store unavailable, delivery waits: %s", error)
                await self._sleep(self.settings.poll_interval * 4)

    async def _claim(self) -> None:
        claims = await self.store.claim(self.settings.claim_size, self.settings.lease_seconds)
        if not claims:
            await self._idle(self.settings.poll_interval)
            return
        for request in await self._prepare(claims):
            if self.settings.dry_run:
                await self._record_dry_run(request)
            else:
                await self._enqueue(request)

    async def _enqueue(self, request: Request) -> None:
        """Queue a request for the workers. When the queue is full, wait until they have taken
        half of it, rather than for each request they take (a wake-up of the feeder each)."""
        if self._queue.full():
            self._room.clear()
            await self._room.wait()
        self._queue.put_nowait(request)

    async def _prepare(self, claims: Claims) -> list[Request]:
        """Dead-letter what may no longer be sent; pack the rest into requests, in order."""
        unsendable, requests = self.wire.prepare(claims, self.clock())
        await self._dead(unsendable)
        return requests

    async def _record_dry_run(self, request: Request) -> None:
        body = request.content.decode("utf-8")
        await self.store.record_dry_run(request.path, body, self.settings.dry_run_keep)
        await self.store.ack(request.ids, dry_run=True)
        self._count_delivered(len(request.claims), dry_run=True)

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on stop()."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _nap(self, seconds: float | None) -> None:
        """Sleep (None: until woken), but wake at once when the state changes (`_signal`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    def _signal(self) -> None:
        """Wake every `_nap`: a pause began or ended, acks were recorded again, or stop. Each
        change sets the event of its time and puts a new one in its place, so a waiter never finds
        it still set from a change it has seen already."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _wait_for_hold(self) -> None:
        while (wait := self._hold_until - self.clock()) > 0 and not self._stopping.is_set():
            await self._nap(wait)

    async def _probe(self) -> None:
        """While paused: try one item every `pause_retry` s, whatever arrives meanwhile; a
        success resumes delivery."""
        if (wait := self._probe_at - self.clock()) > 0:
            await self._nap(wait)  # another request's success, or stop, ends the pause sooner
            return
        self._probe_at = self.clock() + self.settings.pause_retry
        claims = await self.store.claim(1, self.settings.lease_seconds)
        for request in await self._prepare(claims):
            await self._send(request)
        if self.paused is not None:
            log.warning("delivery still paused: %s", self.paused.reason)

    # -- the workers -------------------------------------------------------------------------

    async def _worker(self) -> None:
        while (request := await self._queue.get()) is not None:
            if self._queue.qsize() <= self._queue.maxsize // 2:
                self._room.set()
            try:
                if self._stopping.is_set() or self.paused is not None or self._unrecorded:
                    await self.store.release(request.ids)
                elif self._hold_until - self.clock() > self.settings.lease_seconds / 2:
                    # Too long a wait to hold a lease through: back to the queue until then.
                    await self.store.retry(request.ids, self._hold_until, "held: upstream asked")
                else:
                    await self._wait_for_hold()
                    await self._send(request)
            except StoreError as error:
                # The leases run out and a sweep puts the items back: nothing is lost.
                log.error("store unavailable while settling a request: %s", error)
            except Exception:
                # A bug, not the upstream: say so loudly and keep delivering the rest. This
                # request's leases run out and a sweep puts its items back, so nothing is lost.
                log.exception("unexpected error sending %d item(s)", len(request.claims))

    async def _send(self, request: Request) -> None:
        assert self._client is not None
        await self._bucket.acquire(len(request.claims))
        try:
            verdict = await self.wire.send(self._client, request)
        except httpx.TimeoutException:
            self._count_response("timeout")
            await self._trouble(request, None, "timeout", "no response within the timeout")
            return
        except httpx.HTTPError as error:  # no usable answer: connection, protocol, decoding
            self._count_response("connection")
            await self._trouble(request, None, "connection", f"{type(error).__name__}: {error}")
            return
        # No status: the Event API's token endpoint gave no token (v1 auth).
        self._count_response("auth" if verdict.status is None else str(verdict.status))
        await self._settle(request, verdict)

    # -- settling ----------------------------------------------------------------------------

    async def _settle(self, request: Request, verdict: Verdict) -> None:
        """Act on the upstream's verdict on one request (`verdict.py` says what each kind is)."""
        status = verdict.status
        if verdict.delivered or (status is not None and 200 <= status < 300):
            # The upstream took the credentials: a pause is over, and so is any trouble.
            self._failures = 0
            if self.paused is not None:
                await self._resume()
        match verdict.kind:
            case Kind.DELIVERED | Kind.ALREADY_DELIVERED:
                if verdict.kind is Kind.ALREADY_DELIVERED:
                    log.info(
                        "upstream %s: %s; counted as delivered%s",
                        status, redact(verdict.message)[:200], _trace(verdict.trace_id),
                    )  # fmt: skip
                self._acknowledge(request.ids)
            case Kind.PARTIAL:
                await self._partial(request, verdict)
            case Kind.REJECTED:
                await self._rejected(request, verdict)
            case Kind.PAUSE:
                await self._credentials_rejected(request, verdict)
            case Kind.RETRY if status == 429:
                await self._rate_limited(request, verdict)
            case Kind.RETRY:  # 5xx, statuses the contract does not name, no token: retry
                label = "auth" if status is None else str(status)
                await self._trouble(
                    request, status, label, verdict.message, verdict.retry_after, verdict.trace_id
                )
            case _:
                assert_never(verdict.kind)

    async def _partial(self, request: Request, verdict: Verdict) -> None:
        failed = verdict.failed
        self._acknowledge([id for i, id in enumerate(request.ids) if i not in failed])
        await self._dead([DeadLetter(request.ids[i], REJECTED, m) for i, m in failed.items()])
        await self._upstream_error(verdict.status, "; ".join(failed.values()), verdict.trace_id)

    async def _rejected(self, request: Request, verdict: Verdict) -> None:
        if len(request.claims) > 1:
            log.info(
                "upstream %s refused a request of %d items; splitting it to find the bad ones%s",
                verdict.status, len(request.claims), _trace(verdict.trace_id),
            )  # fmt: skip
            for half in self.wire.split(request):
                await self._send(half)
            return
        message = verdict.failed.get(0) or verdict.message
        await self._dead([DeadLetter(request.ids[0], REJECTED, message)])
        await self._upstream_error(verdict.status, message, verdict.trace_id)

    async def _credentials_rejected(self, request: Request, verdict: Verdict) -> None:
        await self.store.release(request.ids)
        status = verdict.status
        if status in (401, 403):
            reason = f"{status}: the upstream rejects the API key and secret; nothing is dropped"
        else:  # the Event API: a wrong URL, or its token endpoint refused the app id and secret
            reason = f"{verdict.message}; nothing is dropped"
        if self.paused is None:
            self.paused = Paused(since=self.clock(), reason=reason)
            self._probe_at = self.paused.since + self.settings.pause_retry
            self.metrics.paused.set(1)
            self._signal()
            await self.store.set_paused(self.paused)
            log.warning(
                "DELIVERY PAUSED: %s (key %s…); trying again every %gs",
                reason,
                (self.settings.api_key or "")[:4],
                self.settings.pause_retry,
            )
        await self._upstream_error(status, verdict.message, verdict.trace_id)

    async def _resume(self) -> None:
        """The credentials work again: what waited (for a retry time set by failures before
        the pause, or a hold) goes now."""
        log.warning("delivery resumed: the upstream accepts the credentials again")
        self.paused = None
        self._hold_until = 0.0
        self.metrics.paused.set(0)
        self._signal()
        try:
            await self.store.set_paused(None)
            if waiting := await self.store.due_now():
                log.info("%d item(s) that waited for a retry are due now", waiting)
        except StoreError as error:  # they go at their retry time instead
            log.error("store unavailable while resuming delivery: %s", error)

    async def _rate_limited(self, request: Request, verdict: Verdict) -> None:
        wait = verdict.retry_after
        if wait is None:
            self._failures += 1
            wait = self._backoff()
        await self._hold_and_retry(request, wait, f"429 rate limited; waiting {wait:.1f}s")
        await self._upstream_error(429, f"rate limited; waiting {wait:.1f}s", verdict.trace_id)

    async def _trouble(
        self,
        request: Request,
        status: int | None,
        label: str,
        text: str,
        wait: float | None = None,
        trace_id: str | None = None,
    ) -> None:
        """Hold all sending for `wait` (the upstream's Retry-After), else the backoff."""
        self._failures += 1
        if wait is None:
            wait = self._backoff()
        # Contract B's messages start with their status already ("503 InternalServerError: …").
        error = text if text.startswith(label) else f"{label}: {text}"
        await self._hold_and_retry(request, wait, error[:MESSAGE_CHARS])
        await self._upstream_error(status, text, trace_id)

    async def _hold_and_retry(self, request: Request, wait: float, error: str) -> None:
        until = self.clock() + wait
        self._hold_until = max(self._hold_until, until)
        await self.store.retry(request.ids, until, error)

    def _backoff(self) -> float:
        return backoff(
            self._failures, base=self.settings.backoff_base, cap=self.settings.backoff_cap
        )

    def _acknowledge(self, ids: Sequence[int]) -> None:
        """Record items as delivered, in the background, so the worker can send the next request
        while the commit waits for the disk; ids that come meanwhile share the next commit
        (run() waits for the acks before ending)."""
        if not ids:
            return
        self._acks.extend(ids)
        if not self._acking:
            assert self._tasks is not None
            self._acking = True
            self._tasks.create_task(self._ack_delivered())

    async def _ack_delivered(self) -> None:
        """Acknowledge delivered items, one store call for whatever requests finished while the
        previous call waited for its commit (one per request made a store job, a savepoint and
        a future for each hundred items). Refused, the same ids are tried again, backing off,
        and nothing is claimed meanwhile (`_unrecorded`): an item whose ack is lost is sent
        again after its lease, and sending on would do that to every item sent meanwhile."""
        failures = 0
        try:
            while self._acks:
                ids, self._acks = self._acks, []
                try:
                    await self.store.ack(ids)
                except StoreError as error:
                    self._acks[:0] = ids
                    failures += 1
                    if self._stopping.is_set():
                        log.error(
                            "store unavailable at stop: %d delivered item(s) not recorded, to "
                            "be sent again after their lease (duplicates): %s",
                            len(self._acks), error,
                        )  # fmt: skip
                        self._acks = []
                        return
                    if not self._unrecorded:
                        self._unrecorded = True
                        log.error(
                            "store cannot record %d delivered item(s); nothing more is sent "
                            "until it can: %s", len(self._acks), error,
                        )  # fmt: skip
                    wait = backoff(
                        failures, base=self.settings.poll_interval, cap=ACK_RETRY_CAP_SECONDS
                    )
                    await self._sleep(wait)
                    continue
                self._count_delivered(len(ids), dry_run=False)
                if self._unrecorded and not self._acks:
                    self._unrecorded = False
                    log.warning("store records deliveries again (after %d refusals)", failures)
                    self._signal()
        finally:
            self._acking = False

    def _count_delivered(self, count: int, *, dry_run: bool) -> None:
        self.delivered += count
        self._delivered_counters[dry_run].inc(count)

    async def _dead(self, letters: list[DeadLetter]) -> None:
        if letters:
            await self.store.dead(letters)
            for letter in letters:
                self.metrics.dead.labels(reason=letter.reason).inc()
            log.warning("%d item(s) dead-lettered (%s)", len(letters), letters[0].reason)

    async def _upstream_error(
        self, status: int | None, message: str, trace_id: str | None = None
    ) -> None:
        """Record a failure for `rokt-edge status` and log it, both with the trace id, which
        is what Rokt's support asks for."""
        trace = _trace(trace_id)
        recorded = message[: MESSAGE_CHARS - len(trace)] + trace
        await self.store.record_upstream_error(status, recorded)
        log.warning("upstream %s: %s%s", status or "unreachable", redact(message)[:200], trace)

    def _count_response(self, label: str) -> None:
        # A labelled counter is looked up under a lock: once per label, not once per request.
        counter = self._response_counters.get(label)
        if counter is None:
            counter = self._response_counters[label] = self.metrics.upstream_responses.labels(
                status=label
            )
        counter.inc()

    # -- housekeeping ------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Sweep expired leases back (a sender died mid-request) and forget old deliveries."""
        every = min(HOUSEKEEPING_SECONDS, self.settings.lease_seconds / 2)
        pruned_at = 0.0
        while not self._stopping.is_set():
            try:
                if swept := await self.store.sweep():
                    log.warning("%d item(s) whose lease expired are back in the queue", swept)
                    self._wake.set()
                if self.clock() - pruned_at > PRUNE_SECONDS:
                    pruned_at = self.clock()
                    await self.store.prune(before=pruned_at - MAX_AGE_SECONDS)
                    window = self.settings.attribution_window_days * 86400
                    await self.store.prune_identities(before=pruned_at - window)
            except StoreError as error:
                log.error("store unavailable for housekeeping: %s", error)
            await self._sleep(every)


def _trace(trace_id: str | None) -> str:
    """` (trace …)` for a message, or nothing when the upstream sent no trace id (contract A)."""
    return f" (trace {trace_id[:100]})" if trace_id else ""
