"""Power loss: what the store acknowledged survives losing everything not fsync'd.

Real workflows run through a DuckDBStore whose journal writes through
`PowerLossFiles`. At operation N of the journal the power goes: the disk image
keeps only what was fsync'd (and the directory entries whose directory was
fsync'd), the DuckDB files as they were at that instant. A new store opened on the
image must hold every checkpoint the store acknowledged before the loss: for each
record key, the last acknowledged version or a later one that was written. Unlike
the SIGKILL crash tests (the page cache outlives a killed process), this fails if
an fsync is missing (`test_the_check_catches_an_fsync_that_keeps_nothing`).
"""

from __future__ import annotations

import asyncio
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import wfnb
from tests.store._powerloss import LyingFsync, PowerLossFiles
from wfnb.errors import StoreError
from wfnb.store.base import Batch
from wfnb.store.duckdb import DuckDBStore, _journal, _turns
from wfnb.store.duckdb._journal import HEADER, Journal

WORKFLOW = """
steps:
  a: {code: work, with: {name: a}}
  b: {code: work, needs: [a], with: {name: b}}
  f1: {code: work, needs: [b], with: {name: f1}}
  f2: {code: work, needs: [b], with: {name: f2}}
  f3: {code: work, needs: [b], with: {name: f3}}
  c: {code: work, needs: [f1, f2, f3], with: {name: c}}
  d: {code: work, needs: [c], with: {name: d}}
"""


def work(name: str) -> dict[str, Any]:
    return {"name": name, "tuple": (name, 1)} if name == "c" else {"name": name}


class Recording:
    """The store, noting every batch written and whether it was acknowledged
    before the power went (an acknowledgement seen after it is not counted)."""

    def __init__(self, inner: DuckDBStore, files: PowerLossFiles) -> None:
        self.inner, self.files = inner, files
        self.writes: list[tuple[Batch, list[bool]]] = []

    async def write(self, batch: Batch) -> None:
        acked = [False]
        self.writes.append((batch, acked))
        await self.inner.write(batch)
        acked[0] = not self.files.dead

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def run_until_power_loss(folder: Path, files: PowerLossFiles) -> Recording:
    db, image = folder / "live" / "wfnb.duckdb", folder / "image"
    db.parent.mkdir(parents=True)
    image.mkdir()

    def snapshot(journal: dict[Path, bytes]) -> None:
        for path in (db, db.with_name(db.name + ".wal")):
            if path.exists():
                shutil.copy(path, image / path.name)
        for path, content in journal.items():
            (image / path.name).write_bytes(content)

    files.on_power_loss = snapshot
    store = Recording(DuckDBStore(db, journal_files=files, lock_timeout=5.0), files)

    async def main() -> None:
        engine = wfnb.Engine(store=store, namespace={"work": work})  # type: ignore[arg-type]
        try:
            handle = await engine.start(wfnb.Workflow.from_yaml(WORKFLOW, name="lossy"))
            await asyncio.wait_for(handle.wait(), timeout=60)
        except StoreError:
            assert files.dead  # the store fails only once the power is off
        finally:
            try:
                await asyncio.wait_for(engine.close(), timeout=60)
            except StoreError:
                assert files.dead

    asyncio.run(main())
    if not files.dead:  # the run ended first: lose the power now
        snapshot(files.image())
    return store


def lost_checkpoints(image: Path, writes: list[tuple[Batch, list[bool]]]) -> list[str]:
    """Acknowledged records the store opened on ``image`` does not have."""
    versions: dict[tuple[Any, ...], list[tuple[Any, bool]]] = {}
    events: list[tuple[Any, ...]] = []
    for batch, acked in writes:
        for w in batch.workflows:
            versions.setdefault(("workflow", w.name, w.definition_hash), []).append(
                (True, acked[0])
            )
        for r in batch.runs:
            versions.setdefault(("run", r.run_id), []).append((r.status, acked[0]))
        for s in batch.steps:
            key = ("step", s.run_id, s.step_id, s.attempt)
            versions.setdefault(key, []).append(((s.status, s.output), acked[0]))
        if acked[0]:
            events += [(e.run_id, e.step_id, e.attempt, e.status) for e in batch.events]

    async def read() -> tuple[dict[tuple[Any, ...], Any], set[tuple[Any, ...]]]:
        store = DuckDBStore(image / "wfnb.duckdb", lock_timeout=5.0)
        try:
            found: dict[tuple[Any, ...], Any] = {}
            stored_events: set[tuple[Any, ...]] = set()
            for key in versions:
                if key[0] == "workflow":
                    got = await store.get_workflow(name=key[1], definition_hash=key[2])
                    found[key] = True if got else None
                elif key[0] == "run":
                    run = await store.get_run(run_id=key[1])
                    found[key] = run.status if run else None
                    for e in await store.get_events(run_id=key[1]):
                        stored_events.add((e.run_id, e.step_id, e.attempt, e.status))
                    for s in await store.get_steps(run_id=key[1]):
                        found[("step", s.run_id, s.step_id, s.attempt)] = (s.status, s.output)
            return found, stored_events
        finally:
            await store.close()

    found, stored_events = asyncio.run(read())
    lost = []
    for key, history in versions.items():
        last_acked = max((i for i, (_, ok) in enumerate(history) if ok), default=None)
        if last_acked is None:
            continue
        allowed = [value for value, _ in history[last_acked:]]
        if found.get(key) not in allowed:
            lost.append(f"{key}: stored {found.get(key)!r}, acknowledged {allowed[0]!r}")
    lost += [f"event {e}" for e in events if e not in stored_events]
    return lost


@pytest.fixture(autouse=True, scope="module")
def small_chunks() -> Any:
    """Grow the journal by 2 KiB at most, so the runs here grow it several times:
    frames (≈ 300–700 bytes a store batch) land both over zeros made durable before
    (fdatasync) and in a file just grown (fsync); `test_store_runs_reach_both_syncs`
    checks that both happen."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_journal, "PAGE", 256)
        patch.setattr(_journal, "CHUNK", 2048)
        yield


@pytest.fixture(autouse=True, scope="module", params=["loop", "thread"])
def writes_by(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test twice: with light writes journalled on the event loop's thread
    whenever the writer thread is idle (no time budget, or a busy machine would
    send some back to the thread), and with every write handed to the thread."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "loop":
            patch.setattr(_turns, "BUDGET", 60.0)
        else:
            patch.setattr(_turns, "light", lambda batch: False)
        yield request.param


def count_ops(folder: Path) -> int:
    files = PowerLossFiles()
    run_until_power_loss(folder, files)
    return files.ops


@pytest.fixture(scope="module")
def ops(tmp_path_factory: pytest.TempPathFactory, writes_by: str) -> int:
    return count_ops(tmp_path_factory.mktemp("count"))


POINTS = 24


@pytest.mark.parametrize("torn", [False, True], ids=["fsynced-only", "torn-append"])
@pytest.mark.parametrize("point", range(POINTS))
def test_acknowledged_checkpoints_survive_power_loss(
    tmp_path: Path, ops: int, point: int, torn: bool
) -> None:
    crash_at = 1 + point * ops // POINTS + (1 if torn else 0)
    files = PowerLossFiles(crash_at=crash_at, torn=random.Random(point) if torn else None)
    store = run_until_power_loss(tmp_path, files)
    assert lost_checkpoints(tmp_path / "image", store.writes) == []


class _CountingSyncs(PowerLossFiles):
    def __init__(self) -> None:
        super().__init__()
        self.syncs = {"fsync": 0, "fdatasync": 0}

    def fsync(self, fd: int) -> None:
        self.syncs["fsync"] += 1
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self.syncs["fdatasync"] += 1
        super().fdatasync(fd)


def test_store_runs_reach_both_syncs(tmp_path: Path, writes_by: str) -> None:
    """The power-loss points above cover frames written in place (fdatasync) as
    well as frames that grow the file (fsync), not only one of the two paths; and
    frames the event loop's thread wrote, or none of them, as `writes_by` says."""
    files = _CountingSyncs()
    store = run_until_power_loss(tmp_path, files)
    assert files.syncs["fdatasync"] >= 3 and files.syncs["fsync"] >= 3, files.syncs
    inline = store.stats["inline"]
    assert inline >= 3 if writes_by == "loop" else inline == 0, store.stats


def test_power_loss_after_the_run_keeps_it_all(tmp_path: Path) -> None:
    store = run_until_power_loss(tmp_path, PowerLossFiles())
    assert any(acked[0] for _, acked in store.writes)
    assert lost_checkpoints(tmp_path / "image", store.writes) == []


def test_the_check_catches_an_fsync_that_keeps_nothing(tmp_path: Path) -> None:
    """The harness has teeth: with an fsync that keeps nothing, acknowledged
    checkpoints not yet folded into DuckDB are lost, and the check says so."""
    files = LyingFsync(crash_at=count_ops(tmp_path / "count") // 2)
    store = run_until_power_loss(tmp_path / "lie", files)
    assert lost_checkpoints(tmp_path / "lie" / "image", store.writes) != []


class _FirstBytes(random.Random):
    """Tears every unsynced write after its first ``n`` bytes (a frame's header and
    a little more), so a test needs no lucky seed."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def randint(self, a: int, b: int) -> int:
        return min(a + self.n, b)


def test_a_torn_append_after_a_fold_is_a_torn_tail_not_corruption(tmp_path: Path) -> None:
    """A fold cuts the journal back to its header. Were that cut not fsync'd, the
    power going during the next append could keep the old, folded frames with the
    new frame's first bytes written over the first of them: damaged bytes with intact frames
    after them, which opening must refuse as `JournalCorrupt`. So the cut is
    fsync'd, and what survives is a torn tail."""
    path = tmp_path / "wfnb.duckdb.journal"
    kept: dict[Path, bytes] = {}
    files = PowerLossFiles(torn=_FirstBytes(20), on_power_loss=kept.update)
    journal = Journal(path, files)
    journal.open()
    for seq in (1, 2, 3):
        journal.append(seq, [[("run", seq, "folded")]])
    journal.reset()  # as after a fold
    files.crash_at = files.ops + 2  # the next frame is written, the power goes at its fsync
    with pytest.raises(OSError):
        journal.append(4, [[("run", 4, "never acknowledged")]])
    journal.close()
    path.write_bytes(kept[path])
    assert Journal(path).open() == []
    assert path.read_bytes() == HEADER


def _survivors(path: Path, files: PowerLossFiles) -> list[int]:
    """The seqs a journal opened on what the power left of ``path`` holds."""
    copy = path.parent / "image" / path.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes(files.image()[path])
    journal = Journal(copy)
    try:
        return [seq for seq, _ in journal.open()]
    finally:
        journal.close()


@pytest.mark.parametrize("page", [16, 64, 4096])
def test_every_acknowledged_frame_survives_with_preallocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    """A frame is written over preallocated zeros and fdatasync'd; a frame that does
    not fit is written with the zeros of a bigger file and fsync'd (the size
    changes, and an fdatasync would not keep that). After every append the power
    goes in the model (`PowerLossFiles`: fdatasync keeps nothing past the size the
    last fsync made durable), and the journal opened on what is left holds every
    frame appended. Fails if either sync is dropped or the fsync made an fdatasync."""
    monkeypatch.setattr(_journal, "PAGE", page)
    monkeypatch.setattr(_journal, "CHUNK", 4 * page)
    path = tmp_path / "wfnb.duckdb.journal"
    files = PowerLossFiles()
    journal = Journal(path, files)
    journal.open()
    for seq in range(1, 61):
        journal.append(seq, [[("run", seq, "x" * (seq % 7))]])
        assert _survivors(path, files) == list(range(1, seq + 1))
    journal.close()


class _FailsOnce(PowerLossFiles):
    """The next ``fsync`` or ``fdatasync`` (``sync``) fails once ``armed`` is set."""

    def __init__(self, sync: str, *, armed: bool = False) -> None:
        super().__init__()
        self.sync, self.armed = sync, armed

    def _fail(self, sync: str) -> None:
        if self.armed and sync == self.sync:
            self.armed = False
            raise OSError(5, "injected EIO")

    def fsync(self, fd: int) -> None:
        self._fail("fsync")
        super().fsync(fd)

    def fdatasync(self, fd: int) -> None:
        self._fail("fdatasync")
        super().fdatasync(fd)


def test_a_frame_after_a_fold_survives_power_loss(tmp_path: Path) -> None:
    """The cut after a fold takes the preallocated zeros with it, and zeros are
    written again: their size must be made durable (fsync) before a frame goes
    over them with only an fdatasync."""
    path, files = tmp_path / "j", PowerLossFiles()
    journal = Journal(path, files)
    journal.open()
    for seq in (1, 2, 3):
        journal.append(seq, [[seq]])
    journal.reset()
    journal.append(4, [[4]])
    assert _survivors(path, files) == [4]


def test_a_journal_whose_first_open_failed_is_made_durable_by_the_next(
    tmp_path: Path,
) -> None:
    """The first open creates the file and fails (an EIO on its first fsync); the
    next open finds the file there. It must still fsync the directory: else the
    file's entry is never durable, and a power loss takes every acknowledged frame
    with it (found by review; the directory was fsync'd only by the open that
    created the file)."""
    path, files = tmp_path / "j", _FailsOnce("fsync", armed=True)
    journal = Journal(path, files)
    with pytest.raises(OSError, match="injected"):
        journal.open()
    journal.open()
    journal.append(1, [["acknowledged"]])
    assert _survivors(path, files) == [1]
    journal.close()


def test_a_frame_after_a_failed_append_survives_power_loss(tmp_path: Path) -> None:
    """A failed append is cut back, zeros included: the next frame grows the file."""
    path, files = tmp_path / "j", _FailsOnce("fdatasync")
    journal = Journal(path, files)
    journal.open()
    journal.append(1, [[1]])
    files.armed = True
    with pytest.raises(OSError, match="injected"):
        journal.append(2, [[2]])
    journal.append(3, [[3]])
    assert _survivors(path, files) == [1, 3]


def test_a_frame_after_reopening_a_zero_tail_survives_power_loss(tmp_path: Path) -> None:
    """Opening keeps the zero tail a closed journal leaves, and the first frame
    after it goes in place over those zeros."""
    path = tmp_path / "j"
    journal = Journal(path)
    journal.open()
    journal.append(1, [[1]])
    journal.close()
    files = PowerLossFiles()
    journal = Journal(path, files)
    journal.open()
    journal.append(2, [[2]])
    assert _survivors(path, files) == [1, 2]


@pytest.mark.parametrize("reopen", [False, True])
def test_frames_written_in_place_after_a_fold_survive_power_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reopen: bool
) -> None:
    """After a fold's cut (and a reopen after it) the frames go in place over the
    zeros the cut wrote again, with an fdatasync each, the first one included.
    Each of them survives the power going right after its append. (The syncs are
    counted, so the test fails if the in-place path is not the one taken.)"""
    monkeypatch.setattr(_journal, "PAGE", 16)
    monkeypatch.setattr(_journal, "CHUNK", 4096)
    path, files = tmp_path / "j", _CountingSyncs()
    journal = Journal(path, files)
    journal.open()
    for seq in range(1, 41):
        journal.append(seq, [[seq, "x" * (seq % 7)]])
    journal.reset()
    if reopen:
        journal.close()
        assert journal.open() == []
    files.syncs = {"fsync": 0, "fdatasync": 0}
    kept: list[int] = []
    for seq in range(41, 71):
        journal.append(seq, [[seq, "x" * (seq % 7)]])
        kept.append(seq)
        assert _survivors(path, files) == kept
    assert files.syncs == {"fsync": 0, "fdatasync": 30}
    journal.close()
