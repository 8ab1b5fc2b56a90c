"""Light writes journalled on the event loop's thread, once a turn (``_turns``), and
what must still go to the writer thread: heavy batches, writes on a slow disk."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.store.test_duckdb import run_rec, step_rec
from wfnb.errors import StoreError
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch
from wfnb.store.duckdb import DuckDBStore, _fold, _turns
from wfnb.store.duckdb._files import OsFiles

#: makes a store on the test's file (more than one share its writer), closed after
OpenStore = Callable[..., DuckDBStore]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    made: list[DuckDBStore] = []

    def open_store(**options: Any) -> DuckDBStore:
        made.append(DuckDBStore(tmp_path / "s.duckdb", **options))
        return made[-1]

    yield open_store
    for store in made:
        asyncio.run(store.close())


@pytest.fixture
def roomy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time budget: on a busy machine an append may be preempted past 1 ms, and
    these tests are about where writes go, not about the budget."""
    monkeypatch.setattr(_turns, "BUDGET", 60.0)


def test_a_chain_of_light_writes_is_journalled_on_the_loop(
    open_store: OpenStore, roomy: None
) -> None:
    store = open_store()

    async def go() -> dict[str, int]:
        await store.acquire()
        before = store.stats
        for i in range(20):
            await store.write(Batch.changes(steps=[step_rec(f"s{i}", output={"i": i})]))
        after = store.stats
        await store.release()
        return {key: after[key] - before[key] for key in after}

    done = asyncio.run(go())
    assert done["inline"] == done["groups"] == done["frames"] == 20
    assert store.sql("SELECT count(*) AS n FROM steps")["n"][0] == 20


def test_the_writes_of_one_turn_share_one_frame_after_the_first(
    open_store: OpenStore, roomy: None
) -> None:
    store = open_store()

    async def go() -> dict[str, int]:
        await store.acquire()
        before = store.stats
        await asyncio.gather(*(store.write(Batch(runs=[run_rec(f"r{i}")])) for i in range(50)))
        after = store.stats
        return {key: after[key] - before[key] for key in after}

    done = asyncio.run(go())
    assert done["inline"] == done["frames"] == 2
    assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 50


def test_a_heavy_write_keeps_its_place_after_the_light_ones_of_its_turn(
    open_store: OpenStore, roomy: None
) -> None:
    """The heavy batch goes to the thread; the light one made before it in the same
    turn (after the turn's first, so still waiting for the turn's end) must not land
    after it: the attempt would be left `running`."""
    store = open_store()
    running = step_rec(status=StepStatus.RUNNING, ended_at=None)
    completed = step_rec(output="x" * (_turns.LIGHT + 1))
    assert _turns.light(Batch(steps=[running])) and not _turns.light(Batch(steps=[completed]))

    async def go() -> None:
        await store.acquire()
        await asyncio.gather(
            store.write(Batch(runs=[run_rec()])),
            store.write(Batch.changes(steps=[running])),
            store.write(Batch.changes(steps=[completed])),
        )

    asyncio.run(go())
    assert store.sql("SELECT status FROM steps")["status"].tolist() == ["completed"]


def test_what_makes_a_batch_heavy() -> None:
    assert _turns.light(Batch(steps=[step_rec(output={"rows": list(range(100))})]))
    assert not _turns.light(Batch(steps=[step_rec(output=list(range(_turns.LIGHT)))]))
    assert not _turns.light(Batch(steps=[step_rec(output=object())]))  # pickled
    assert not _turns.light(Batch(runs=[run_rec(inputs={"blob": b"x" * _turns.LIGHT})]))


def test_a_runs_code_fingerprints_weigh_once_a_batch() -> None:
    """A run that starts at once writes its pending and running records together,
    with the one map of fingerprints both carry, which is encoded and written once:
    it weighs once, so a 200-step run's start stays on the loop. Two runs with
    maps of their own weigh twice."""
    hashes = {f"s{i}": "f" * 64 for i in range(200)}
    assert 64 * len(hashes) < _turns.LIGHT < 2 * 64 * len(hashes)
    pending = run_rec(status=RunStatus.PENDING, code_hashes=hashes)
    running = run_rec(status=RunStatus.RUNNING, code_hashes=hashes)
    assert _turns.light(Batch.changes(runs=[pending, running]))
    other = run_rec("r2", code_hashes=dict(hashes))
    assert not _turns.light(Batch.changes(runs=[pending, other]))


@pytest.mark.parametrize("derived", [True, False])
def test_an_error_weighs_as_often_as_it_is_written(derived: bool) -> None:
    """A change's error is written twice, in its record and in its event: an error
    of over half the budget makes `Batch.changes` heavy, as it does a batch of the
    same records with their events one by one; a record alone is still light."""
    half = "e" * (_turns.LIGHT // 2 + 10)
    for records in ({"steps": [step_rec(error=half)]}, {"runs": [run_rec(error=half)]}):
        changes = Batch.changes(**records)  # type: ignore[arg-type]
        batch = changes if derived else Batch(**records, events=list(changes.events))  # type: ignore[arg-type]
        assert (batch.derived_events is not None) is derived
        assert not _turns.light(batch)
        assert _turns.light(Batch(**records))  # type: ignore[arg-type]


def test_closing_the_store_writes_the_turn_still_open(
    tmp_path: Path, open_store: OpenStore, roomy: None
) -> None:
    path = tmp_path / "s.duckdb"

    async def go() -> None:
        store = DuckDBStore(path)
        await store.acquire()
        writes = asyncio.gather(*(store.write(Batch(runs=[run_rec(n)])) for n in ("a", "b")))
        await asyncio.sleep(0)  # "a" is written; "b" waits for the turn's end
        await store.close()
        await writes

    asyncio.run(go())
    reopened = open_store()
    assert sorted(reopened.sql("SELECT run_id FROM runs")["run_id"]) == ["a", "b"]


@pytest.mark.parametrize("held", [True, False], ids=["held", "not-held"])
def test_journalled_rows_are_folded_once_writes_stop(
    open_store: OpenStore, roomy: None, held: bool
) -> None:
    """Held, the writer thread waits with no timeout; not held, it waits for
    ``idle_close`` (60 s here). Either way a write made on the loop's thread must
    get the journal folded ``fold_idle`` seconds after it, not later."""
    store = open_store(fold_idle=0.05, idle_close=60)

    async def folded_after(write: Batch) -> bool:
        folds = store.stats["folds"]
        await store.write(write)
        deadline = time.monotonic() + 20
        while store.stats["folds"] == folds and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return store.stats["folds"] == folds + 1

    async def go() -> None:
        if held:
            await store.acquire()
        assert await folded_after(Batch(runs=[run_rec("opens")]))  # by the thread, if not held
        # The fold is counted before the thread has reset the journal and let go of
        # the store; a write made meanwhile goes to the thread. A flush is answered
        # once the thread has let go: then the next write is the loop's own.
        await store.flush()
        inline = store.stats["inline"]
        assert await folded_after(Batch(runs=[run_rec("on the loop")]))
        assert store.stats["inline"] == inline + 1

    asyncio.run(go())


class SlowDisk(OsFiles):
    """A disk whose first two syncs, once armed, take 5 ms (past the budget); the
    next ones say they started and wait for ``go``: set by a coroutine, which only
    runs while the loop is not blocked."""

    def __init__(self) -> None:
        self.armed = False
        self.syncs = 0
        self.started = threading.Event()
        self.go = threading.Event()
        self.waited_in_vain = False

    def _sync(self) -> None:
        if not self.armed:
            return
        self.syncs += 1
        if self.syncs <= 2:
            time.sleep(0.005)
            return
        self.started.set()
        if not self.go.wait(timeout=10):
            self.waited_in_vain = True

    def fsync(self, fd: int) -> None:
        self._sync()
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._sync()
        super().fdatasync(fd)


def test_a_slow_disk_sends_writes_to_the_thread_and_the_loop_keeps_running(
    open_store: OpenStore,
) -> None:
    disk = SlowDisk()
    store = open_store(journal_files=disk)

    async def go() -> None:
        await store.acquire()
        disk.armed = True
        for name in ("slow", "slower"):  # on the loop: 5 ms each, over budget twice
            await store.write(Batch(runs=[run_rec(name)]))
        assert store.stats["inline"] == 2

        async def unblock() -> None:
            while not disk.started.is_set():
                await asyncio.sleep(0.001)
            disk.go.set()

        writing = asyncio.ensure_future(store.write(Batch(runs=[run_rec("next")])))
        await asyncio.ensure_future(unblock())
        await writing

    asyncio.run(go())
    assert not disk.waited_in_vain, "the loop was blocked in the disk's sync"
    assert store.stats["inline"] == 2
    assert sorted(store.sql("SELECT run_id FROM runs")["run_id"]) == ["next", "slow", "slower"]


def test_a_light_write_does_not_overtake_a_heavy_one_queued_for_the_thread(
    open_store: OpenStore, roomy: None
) -> None:
    store = open_store()
    heavy = run_rec(status=RunStatus.RUNNING, inputs={"blob": "x" * (_turns.LIGHT + 1)})
    done = run_rec(status=RunStatus.COMPLETED, inputs={"blob": "y"})

    async def go() -> list[list[str]]:
        await store.acquire()
        seen = []
        for _ in range(10):
            await asyncio.gather(store.write(Batch(runs=[heavy])), store.write(Batch(runs=[done])))
            seen.append(store.sql("SELECT status FROM runs")["status"].tolist())
        return seen

    assert asyncio.run(go()) == [["completed"]] * 10


def test_writes_through_two_stores_on_one_file_keep_their_order(
    open_store: OpenStore, roomy: None
) -> None:
    """Stores on one path share a writer, and so the turn: the later write, made
    through the second store as the first write of its turn, must land last."""
    first, second = open_store(), open_store()

    async def go() -> None:
        await first.acquire()
        await asyncio.gather(
            first.write(Batch(runs=[run_rec("other")])),  # the turn's first write
            first.write(Batch.changes(steps=[step_rec(status=StepStatus.RUNNING, ended_at=None)])),
            second.write(Batch.changes(steps=[step_rec()])),
        )

    asyncio.run(go())
    assert first.sql("SELECT status FROM steps")["status"].tolist() == ["completed"]


def test_one_store_written_from_loops_on_two_threads(open_store: OpenStore, roomy: None) -> None:
    store = open_store()
    failures: list[BaseException] = []

    def writer(tag: str) -> None:
        async def go() -> None:
            for i in range(50):
                batches = (Batch(runs=[run_rec(f"{tag}-{i}-{k}")]) for k in range(4))
                await asyncio.wait_for(asyncio.gather(*map(store.write, batches)), 30)

        try:
            asyncio.run(go())
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            failures.append(exc)

    asyncio.run(store.acquire())
    threads = [threading.Thread(target=writer, args=(tag,)) for tag in "AB"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert store.sql("SELECT count(*) AS n FROM runs")["n"][0] == 400


def test_outputs_too_deep_or_cyclic_are_heavy_and_stored_as_before(
    open_store: OpenStore, roomy: None
) -> None:
    """A walk with no depth limit hit the recursion limit on these, on the loop."""
    cyclic: list[object] = []
    cyclic.append(cyclic)
    deep: list[object] = []
    inner = deep
    for _ in range(1200):
        inner.append([])
        inner = inner[0]  # type: ignore[assignment]
    assert not _turns.light(Batch(steps=[step_rec(output=cyclic)]))
    assert not _turns.light(Batch(steps=[step_rec(output=deep)]))
    store = open_store()

    async def go() -> None:
        await store.acquire()
        await store.write(Batch(steps=[step_rec("cyclic", output=cyclic)]))  # pickled
        with pytest.raises(StoreError):  # too deep to pickle
            await store.write(Batch(steps=[step_rec("deep", output=deep)]))

    asyncio.run(go())
    assert store.sql("SELECT step_id, output_kind FROM steps").values.tolist() == [
        ["cyclic", "pickle"]
    ]


class BrokenSync(OsFiles):
    """A disk whose ``fdatasync`` raises, once, an error no disk should (a bug)."""

    def __init__(self) -> None:
        self.countdown: int | None = None

    def fdatasync(self, fd: int) -> None:
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown == 0:
                self.countdown = None
                raise RuntimeError("unexpected")
        super().fdatasync(fd)


def test_an_unexpected_error_writing_fails_its_writes_and_leaves_none_waiting(
    open_store: OpenStore, roomy: None
) -> None:
    """Whichever thread meets it (the loop's, at a turn's first write or its end, or
    the writer's): every write gets an answer, a failed one is a `StoreError` and
    leaves no row, and the store goes on."""
    disk = BrokenSync()
    store = open_store(journal_files=disk)
    names = ("a", "b", "c")

    async def go() -> list[BaseException | None]:
        await store.acquire()
        for name in ("w1", "w2"):  # the journal has grown: the next syncs are fdatasyncs
            await store.write(Batch(runs=[run_rec(name)]))
        disk.countdown = 2  # the turn's first write syncs; the next sync fails
        writes = [store.write(Batch(runs=[run_rec(name)])) for name in names]
        done = await asyncio.wait_for(asyncio.gather(*writes, return_exceptions=True), 30)
        await store.write(Batch(runs=[run_rec("after")]))
        return done

    done = asyncio.run(go())
    assert all(outcome is None or isinstance(outcome, StoreError) for outcome in done)
    assert any(isinstance(outcome, StoreError) for outcome in done)
    stored = {name for name, outcome in zip(names, done, strict=True) if outcome is None}
    rows = set(store.sql("SELECT run_id FROM runs")["run_id"])
    assert rows == {"w1", "w2", "after"} | stored


def test_a_fold_that_keeps_failing_is_retried_every_fold_idle_not_in_a_spin(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch, roomy: None
) -> None:
    tries: list[float] = []  # when each fold was tried: its rejection, the last step
    three = threading.Event()

    def refuse(*args: object) -> set[str]:
        raise StoreError("the disk is in trouble")

    def refuse_too(*args: object) -> None:
        tries.append(time.monotonic())
        if len(tries) >= 3:
            three.set()
        refuse()

    store = open_store(fold_idle=0.05)

    async def go() -> None:
        await store.acquire()
        monkeypatch.setattr(_fold, "transaction", refuse)
        monkeypatch.setattr(_fold, "reject", refuse_too)
        await store.write(Batch(runs=[run_rec()]))
        assert await asyncio.to_thread(three.wait, 30)
        monkeypatch.undo()
        await store.release()

    asyncio.run(go())
    # A failed fold is tried again fold_idle (0.05 s) later, not at once.
    assert tries[2] - tries[0] >= 0.099


def test_a_turn_left_open_by_a_closed_loop_is_written_when_the_store_closes(
    tmp_path: Path, open_store: OpenStore, roomy: None
) -> None:
    path = tmp_path / "s.duckdb"
    store = DuckDBStore(path)
    asyncio.run(store.acquire())
    loop = asyncio.new_event_loop()

    async def two() -> None:
        await store.write(Batch(runs=[run_rec("first")]))  # journalled at once
        await store.write(Batch(runs=[run_rec("second")]))  # waits for the turn's end

    loop.call_soon(loop.stop)  # stop after this turn, which runs the task's first step:
    loop.create_task(two())  # the turn's end never runs
    loop.run_forever()
    loop.close()
    asyncio.run(store.close())
    reopened = open_store()
    assert sorted(reopened.sql("SELECT run_id FROM runs")["run_id"]) == ["first", "second"]


def test_an_unexpected_error_in_an_idle_fold_leaves_the_writer_thread_working(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch, roomy: None
) -> None:
    store = open_store(fold_idle=0.05)
    tried = threading.Event()

    def bug(*args: object) -> set[str]:
        tried.set()
        raise RuntimeError("a bug")

    async def go() -> list[str]:
        await store.acquire()
        monkeypatch.setattr(_fold, "transaction", bug)
        await store.write(Batch(runs=[run_rec()]))
        assert await asyncio.to_thread(tried.wait, 30)  # the idle fold met the bug
        monkeypatch.undo()
        frame = await asyncio.wait_for(store.query("SELECT run_id FROM runs"), 30)
        return list(frame["run_id"])

    assert asyncio.run(go()) == ["r1"]


def test_malformed_or_big_values_are_heavy() -> None:
    """Left to the thread: its encoding refuses a malformed record with `StoreError`,
    and a big value is not encoded on the loop."""
    assert not _turns.light(Batch(runs=[run_rec(error=ValueError("not text"))]))
    assert not _turns.light(Batch(steps=[step_rec(output=10**50_000)]))
    assert not _turns.light(Batch(steps=[step_rec(output={"é" * _turns.LIGHT: 1})]))
    assert _turns.light(Batch(steps=[step_rec(output={"é" * 100: 10**100})]))


def test_a_malformed_record_is_refused_with_a_store_error(open_store: OpenStore) -> None:
    store = open_store()

    async def go() -> None:
        await store.acquire()
        with pytest.raises(StoreError):
            await store.write(Batch(runs=[run_rec(error=ValueError("not text"))]))

    asyncio.run(go())
