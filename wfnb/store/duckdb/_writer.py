"""The writer thread: the owner of the DuckDB connection and the journal.

Everything the store does is an operation queued to this thread, so the kernel's
event loop does not wait on DuckDB, and the connection (which is not shared across
threads) has a single owner. The one exception is `Writer.append_now`: while the
thread is idle, a light write is appended to the journal on the caller's thread
(see ``_turns`` for when that pays). When the thread picks up work it drains the queue:
every write waiting at that moment goes into ONE journal frame + fsync (or one
DuckDB transaction) — that is the group commit. Each caller is resolved with
``loop.call_soon_threadsafe`` (see ``_waiters.AsyncWaiter``), the one safe way to finish an
asyncio future from another thread.

Connection lifetime: DuckDB lets one process at a time open a file for writing, and
a second kernel on the same store must be able to get in. So the connection (and
with it the file lock) is opened on the first operation and closed once the store
has been idle for ``idle_close`` seconds, unless holds are taken with
`DuckDBStore.acquire` (the engine holds one while runs are active). Opening retries
with backoff while another process holds the lock and gives up after
``lock_timeout`` seconds with `StoreLocked` naming the holder (see ``_lock``). A
write that cannot get the lock is failed, never half-applied.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from wfnb.errors import StoreError
from wfnb.store.base import Batch
from wfnb.store.duckdb import _lock
from wfnb.store.duckdb._codec import EncodedBatch, encode_batch
from wfnb.store.duckdb._database import Database
from wfnb.store.duckdb._files import OS_FILES, JournalFiles
from wfnb.store.duckdb._waiters import LIVE, NOBODY, Answer, Later, Waiter

log = logging.getLogger("wfnb.store")
_WRITE, _CALL, _HOLD, _CLOSE, _WAKE = range(5)


Op = tuple[int, Any, Waiter]


class Mailbox:
    """The writer thread's queue of operations. It counts those queued and not yet
    done (wakes aside), since a caller's thread may write on its own only when none
    is (`Writer.append_now`): so writes keep the order they were made in. And it
    closes at once: an operation is either queued before the close, and answered by
    it, or refused; never queued for a thread that is gone."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._lock = threading.Lock()
        #: read without the lock by `append_now`, then again under the writer's lock
        self.queued = 0
        self.closed = False

    def put(self, op: Op) -> bool:
        """Queue ``op``; False once closed."""
        with self._lock:
            if self.closed:
                return False
            self.queued += op[0] != _WAKE
            self._queue.put(op)
        return True

    def take(self, timeout: float | None) -> list[Op]:
        """Everything queued, waiting up to ``timeout`` for the first (`queue.Empty`)."""
        return [self._queue.get(timeout=timeout), *self._queued_now()]

    def done(self, ops: list[Op]) -> None:
        with self._lock:
            self.queued -= sum(kind != _WAKE for kind, _, _ in ops)

    def close(self) -> list[Op]:
        """Refuse every operation from now on; those still queued, to be answered."""
        with self._lock:
            self.closed = True
            return self._queued_now()

    def _queued_now(self) -> list[Op]:
        ops = []
        with contextlib.suppress(queue.Empty):
            while True:
                ops.append(self._queue.get_nowait())
        return ops


#: `Writer.stats`, counters for benchmarks and tests: ``inline`` counts the groups
#: the caller's thread wrote, ``inline_holds`` the holds it took or let go of
COUNTERS = ("groups", "inline", "inline_holds", "frames", "folds", "opens")


class Writer:
    def __init__(
        self,
        path: Path,
        *,
        lock_timeout: float,
        idle_close: float,
        journal: bool,
        fold_rows: int,
        fold_idle: float,
        files: JournalFiles = OS_FILES,
    ) -> None:
        self.path = path
        self.idle_close = idle_close
        self.fold_rows, self.fold_idle = fold_rows, fold_idle
        self.stats = dict.fromkeys(COUNTERS, 0)
        #: the file and its journal: changed only under ``_busy`` (a few of its
        #: fields are read without it, as hints checked again under it)
        self._db = Database(
            path,
            files,
            lock_timeout=lock_timeout,
            journal=journal,
            stats=self.stats,
        )
        self._mail = Mailbox()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        #: held while the thread works (ops, a fold, closing the file): a write on
        #: the caller's thread (`append_now`) happens only when it can take it
        self._busy = threading.Lock()
        self._holds = 0
        self._last_op = time.monotonic()
        self._fold_tried = 0.0

    @property
    def closed(self) -> bool:
        """No longer usable: closed, or inherited by fork (then a new one is made)."""
        return self._mail.closed or self._db.forked_from is not None

    # -- submission (any thread) --------------------------------------------------
    def submit(self, kind: int, payload: Any, waiter: Waiter) -> None:
        if self._db.forked_from is not None:  # inherited by a fork: no thread here
            waiter.resolve(None, StoreError(str(self._db.forked_refusal())))
            return
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._main, daemon=True, name=f"wfnb-store {self.path.name}"
                    )
                    self._thread.start()
                    LIVE.add(self)
        if not self._mail.put((kind, payload, waiter)):
            waiter.resolve(None, self._closed_error())

    @contextlib.contextmanager
    def _idle(self) -> Iterator[bool]:
        """Whether the calling thread may do the writer thread's work itself now:
        the file is open and the thread idle with nothing queued (so the work keeps
        the order it was asked in). The thread is kept out until the block ends."""
        free = self._db.connection is not None and not self._mail.queued and not self.closed
        if not free or not self._busy.acquire(blocking=False):
            yield False
            return
        try:  # (checked again: the thread may have raced ahead)
            yield not self._mail.queued and self._db.connection is not None
        finally:
            self._busy.release()

    def hold_now(self, delta: int) -> bool:
        """Take (``+1``) or let go of (``-1``) a hold as `hold` does, on the calling
        thread when the file is open and the thread idle; else False (nothing done).
        Taking the store at a run's start then costs no thread hop (≈ 0.1 ms)."""
        with self._idle() as idle:
            if not idle:
                return False
            self._count_hold(delta)
            self.stats["inline_holds"] += 1
        if delta < 0:  # the thread waits with no timeout while held: let it count
            self._mail.put((_WAKE, None, NOBODY))
        return True

    def _count_hold(self, delta: int) -> None:
        self._holds = max(0, self._holds + delta)  # never below none: a stray release is no-op

    def append_now(self, batches: list[EncodedBatch]) -> list[StoreError | None] | None:
        """Journal ``batches`` (light ones: no table) on the calling thread as one
        group and return each one's error (None: durable); or do nothing and return
        None when the thread must do it: it is busy or has work queued, the file is
        not open yet, or there is no journal. It spares the two thread wake-ups of a
        hand-off; the caller decides when to block on the disk (see ``_turns``)."""
        db = self._db
        if not db.use_journal:
            return None
        with self._idle() as idle:
            if not idle:
                return None
            first = not db.pending
            try:
                errors = db.write_encoded(batches)
            except Exception as exc:  # a bug must not leave the callers without an answer
                log.exception("wfnb store: unexpected error writing the journal")
                errors = [StoreError(f"internal error in the store: {exc!r}")] * len(batches)
            self.stats["inline"] += 1
            self._last_op = time.monotonic()
            # The first rows since a fold (the thread may wait with no timeout), or
            # enough to fold.
            wake = (first and bool(db.pending)) or self._fold_is_due()
        if wake:  # not counted as queued: it is no write the next ones must follow
            self._mail.put((_WAKE, None, NOBODY))
        return errors

    # -- the thread ---------------------------------------------------------------
    def _main(self) -> None:
        while True:
            try:
                ops = self._mail.take(self._next_wakeup())
            except queue.Empty:
                try:
                    with self._busy:
                        self._on_idle()
                except Exception:  # a bug must not kill the thread every caller waits on
                    log.exception("wfnb store writer: unexpected error while idle")
                continue
            if all(kind == _WAKE for kind, _, _ in ops) and not self._fold_is_due():
                continue  # only a new timeout to count: leave the store free for the loop
            answers: list[Answer] = []
            ops = [(kind, payload, Later(waiter, answers)) for kind, payload, waiter in ops]
            closed = False
            try:
                with self._busy:
                    closed = self._process(ops)
            except Exception as exc:  # a bug must not kill the thread every caller waits on
                log.exception("wfnb store writer: unexpected error")
                error = StoreError(f"internal error in the store writer: {exc!r}")
                for _, _, waiter in ops:
                    waiter.resolve(None, error)  # no-op for those already resolved
            self._last_op = time.monotonic()
            self._mail.done(ops)
            for waiter, result, failure in answers:
                waiter.resolve(result, failure)
            if closed:
                return

    def _process(self, ops: list[Op]) -> bool:
        """Run ``ops`` in order, consecutive writes as one group; True once closed."""
        i = 0
        while i < len(ops):
            j = i
            while j < len(ops) and ops[j][0] == _WRITE:
                j += 1
            if j > i:
                self._write_group(ops[i:j])
                i = j
                continue
            kind, payload, waiter = ops[i]
            i += 1
            if kind == _CLOSE:
                self._shutdown(waiter, ops[i:])
                return True
            if kind == _WAKE:
                self._fold_if_due()
                continue
            self._run_call(kind, payload, waiter)
        return False

    def _next_wakeup(self) -> float | None:
        if self._db.connection is None:
            return None
        if self._db.pending:
            return max(0.0, self._fold_due() - time.monotonic())
        return None if self._holds else self.idle_close

    def _fold_due(self) -> float:
        """fold_idle after the last write (wherever it was made) and after the last
        fold tried, so that a fold that keeps failing is retried at that pace."""
        return max(self._last_op, self._fold_tried) + self.fold_idle

    def _fold_is_due(self) -> bool:
        return self._db.pending.rows >= self.fold_rows

    def _fold_if_due(self) -> None:
        """Fold once ``fold_rows`` rows wait. The rows are durable already: a failed
        fold fails no write; the journal keeps them and the fold is retried when
        idle or on a read."""
        if self._fold_is_due():
            with contextlib.suppress(StoreError):
                self._db.fold()

    def _on_idle(self) -> None:
        try:
            if self._db.pending:
                if time.monotonic() >= self._fold_due():
                    self._fold_tried = time.monotonic()
                    self._db.fold()
            elif (
                self._db.connection is not None
                and not self._holds
                and time.monotonic() - self._last_op >= self.idle_close
            ):
                self._db.disconnect()
        except StoreError:
            pass  # the journal still holds the rows; the next operation retries

    def _write_group(self, ops: list[Op]) -> None:
        waiters: list[Waiter] = []
        batches: list[EncodedBatch] = []
        for _, batch, waiter in ops:
            try:  # (pre-encoded when the caller's thread had a go at it first)
                batches.append(batch if isinstance(batch, EncodedBatch) else encode_batch(batch))
            except StoreError as exc:
                waiter.resolve(None, exc)
            else:
                waiters.append(waiter)
        if batches:
            for waiter, error in zip(waiters, self._db.write_encoded(batches), strict=True):
                waiter.resolve(None, error)
            self._fold_if_due()

    def _run_call(self, kind: int, payload: Any, waiter: Waiter) -> None:
        try:
            if kind == _HOLD:
                if payload > 0:
                    self._db.connect()  # may raise StoreLocked: then nothing is held
                self._count_hold(payload)
                waiter.resolve(None, None)
                return
            con = self._db.connect()
            self._db.fold()
            result = payload(con)
        except duckdb.Error as exc:
            waiter.resolve(None, _lock.translate(exc, self.path))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, not swallowed
            waiter.resolve(None, exc)
        else:
            waiter.resolve(result, None)

    def _shutdown(self, waiter: Waiter, rest: list[Op]) -> None:
        rest = rest + self._mail.close()
        error: BaseException | None = None
        try:
            self._db.disconnect()
        except StoreError as exc:
            error = exc
        waiter.resolve(None, error)
        for _, _, other in rest:
            other.resolve(None, self._closed_error())

    def _closed_error(self) -> StoreError:
        return StoreError(f"the store {self.path} is closed")

    # -- helpers for the store ----------------------------------------------------
    def call(self, fn: Callable[[duckdb.DuckDBPyConnection], Any], waiter: Waiter) -> None:
        self.submit(_CALL, fn, waiter)

    def write(self, batch: Batch | EncodedBatch, waiter: Waiter) -> None:
        self.submit(_WRITE, batch, waiter)

    def hold(self, delta: int, waiter: Waiter) -> None:
        self.submit(_HOLD, delta, waiter)

    def close(self, waiter: Waiter) -> None:
        self.submit(_CLOSE, None, waiter)
