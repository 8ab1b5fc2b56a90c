"""Write throughput of the checkpoint stores, as the engine will use them.

    python benchmarks/bench_store.py [--n 400] [--dir DIR]
    python benchmarks/bench_store.py --ack [--rounds 15] [--dir DIR]

Shapes (each on a fresh DuckDB file in DIR, default a temp dir):

- ``chain``   sequential ``write`` calls of 2 step records (step i "after" + step
              i+1 "before"): the durable latency a chain step pays.
- ``batch1``  sequential ``write`` calls of 1 record.
- ``batch200`` sequential ``write`` calls of 200 records: µs per record.
- ``fanout``  200 concurrent ``write`` calls of 1 record (group commit): µs per record.

Each with the journal (the default) and without it (every write its own DuckDB
transaction), plus ``close`` (the final fold) and the raw costs behind the decision:
an fsync'd append and a DuckDB upsert transaction of 2 rows.

``--ack`` weighs the acknowledgement journal alone (issue 13): wfnb's hand-written
journal (``Journal.append``: one frame + fsync per group commit) against SQLite
(stdlib ``sqlite3``, WAL, ``synchronous=FULL``, one transaction per group commit),
both given the same frames (a chain step's 2 encoded step rows), next to the fsync
floor (``write`` + ``fsync`` of as many bytes) measured in the same process. The
three take turns commit by commit (who goes first rotates), so load from other
processes falls on all of them alike; the report gives the median and p90 wall
time and the mean CPU time (of this thread) per acknowledged commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wfnb.model import RunStatus, StepStatus  # noqa: E402
from wfnb.store.base import Batch, RunRecord, StepRecord  # noqa: E402
from wfnb.store.duckdb import DuckDBStore  # noqa: E402


def step(run_id: str, i: int, status: StepStatus) -> StepRecord:
    now = time.time()
    done = status is StepStatus.COMPLETED
    return StepRecord(
        run_id=run_id,
        step_id=f"s{i}",
        attempt=1,
        status=status,
        started_at=now,
        ended_at=now if done else None,
        output={"i": i} if done else None,
        has_output=done,
    )


async def shape(store: DuckDBStore, name: str, n: int) -> dict[str, float]:
    run = RunRecord(
        run_id=name,
        workflow="bench",
        definition_hash="h",
        status=RunStatus.RUNNING,
        inputs={},
        created_at=time.time(),
    )
    await store.write(Batch(runs=[run]))
    t0 = time.perf_counter()
    if name == "chain":
        for i in range(n):
            await store.write(
                Batch(
                    steps=[
                        step(name, i, StepStatus.COMPLETED),
                        step(name, i + 1, StepStatus.RUNNING),
                    ]
                )
            )
        per, unit = n, "step"
    elif name == "batch1":
        for i in range(n):
            await store.write(Batch(steps=[step(name, i, StepStatus.COMPLETED)]))
        per, unit = n, "write"
    elif name == "batch200":
        rounds = max(1, n // 100)
        for r in range(rounds):
            await store.write(
                Batch(steps=[step(name, r * 200 + i, StepStatus.COMPLETED) for i in range(200)])
            )
        per, unit = rounds * 200, "record"
    else:  # fanout
        await asyncio.gather(
            *(store.write(Batch(steps=[step(name, i, StepStatus.RUNNING)])) for i in range(200))
        )
        per, unit = 200, "record"
    elapsed = time.perf_counter() - t0
    return {"us_per_" + unit: round(elapsed / per * 1e6, 1)}


async def bench(directory: Path, n: int, journal: bool) -> dict[str, object]:
    out: dict[str, object] = {}
    for name in ("chain", "batch1", "batch200", "fanout"):
        path = directory / f"{name}-{'journal' if journal else 'direct'}.duckdb"
        store = DuckDBStore(path, journal=journal)
        await store.acquire()  # as the engine does while runs are active
        await store.write(
            Batch(
                runs=[
                    RunRecord(
                        run_id="warm",
                        workflow="b",
                        definition_hash="h",
                        status=RunStatus.RUNNING,
                        inputs={},
                        created_at=time.time(),
                    )
                ]
            )
        )
        result: dict[str, object] = dict(await shape(store, name, n))
        t0 = time.perf_counter()
        await store.release()
        await store.close()
        result["close_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        result.update({k: v for k, v in store.stats.items() if k != "opens"})
        out[name] = result
    return out


def raw_costs(directory: Path) -> dict[str, float]:
    import duckdb

    fd = os.open(directory / "raw.journal", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    payload = b"x" * 300
    t0 = time.perf_counter()
    for _ in range(300):
        os.write(fd, payload)
        os.fsync(fd)
    fsync_us = (time.perf_counter() - t0) / 300 * 1e6
    os.close(fd)
    con = duckdb.connect(str(directory / "raw.duckdb"))
    con.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY, v VARCHAR)")
    t0 = time.perf_counter()
    for i in range(200):
        con.execute("BEGIN")
        con.execute(
            "INSERT INTO t SELECT unnest($1), unnest($2) ON CONFLICT DO UPDATE SET v = excluded.v",
            [[f"a{i}", f"b{i}"], ["x", "y"]],
        )
        con.execute("COMMIT")
    txn_us = (time.perf_counter() - t0) / 200 * 1e6
    con.close()
    return {
        "append_fsync_300B_us": round(fsync_us, 1),
        "duckdb_upsert_txn_2rows_us": round(txn_us, 1),
    }


class SqliteJournal:
    """The SQLite candidate for the acknowledgement journal: the same job as
    ``Journal`` (append a frame durably, empty after a fold)."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=FULL")
        self.con.execute("CREATE TABLE IF NOT EXISTS frames (seq INTEGER PRIMARY KEY, rows BLOB)")

    def append(self, seq: int, rows: object) -> None:
        import pickle

        self.con.execute("BEGIN")
        self.con.execute("INSERT INTO frames VALUES (?, ?)", (seq, pickle.dumps(rows, protocol=5)))
        self.con.execute("COMMIT")

    def reset(self) -> None:
        self.con.execute("DELETE FROM frames")

    def close(self) -> None:
        self.con.close()


def ack_costs(directory: Path, rounds: int, per_round: int = 200) -> dict[str, object]:
    import pickle
    import statistics

    from wfnb.store.duckdb._codec import encode_batch
    from wfnb.store.duckdb._journal import Journal

    encoded = encode_batch(
        Batch(steps=[step("r", 1, StepStatus.COMPLETED), step("r", 2, StepStatus.RUNNING)])
    )
    rows = encoded.rows
    frame_bytes = len(pickle.dumps(rows, protocol=5)) + 16
    journal = Journal(directory / "ack.journal")
    journal.open()
    lite = SqliteJournal(directory / "ack.sqlite")
    fd = os.open(directory / "floor.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    payload = b"x" * frame_bytes
    seq = 0
    names = ("fsync_floor", "wfnb_journal", "sqlite_wal_full")
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}

    def floor() -> None:
        os.write(fd, payload)
        os.fsync(fd)

    def ours() -> None:
        journal.append(seq, rows)

    def theirs() -> None:
        lite.append(seq, rows)

    ops = dict(zip(names, (floor, ours, theirs), strict=True))
    for r in range(rounds):
        for i in range(per_round):
            seq += 1
            turn = names[(i + r) % 3 :] + names[: (i + r) % 3]  # who goes first rotates
            for name in turn:
                c0, t0 = time.thread_time(), time.perf_counter()
                ops[name]()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
        journal.reset()  # as after a fold: neither file grows without bound
        lite.reset()
    journal.close()
    lite.close()
    os.close(fd)
    floor_us = statistics.median(wall["fsync_floor"]) * 1e6
    out: dict[str, object] = {
        "frame_bytes": frame_bytes,
        "commits_each": rounds * per_round,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    for name in names:
        median = statistics.median(wall[name]) * 1e6
        out[name] = {
            "us_per_commit_median": round(median, 1),
            "p90": round(statistics.quantiles(wall[name], n=10)[-1] * 1e6, 1),
            "x_floor": round(median / floor_us, 2),
            "cpu_us_per_commit": round(statistics.mean(cpu[name]) * 1e6, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="writes per sequential shape")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--ack", action="store_true", help="weigh the acknowledgement journal")
    parser.add_argument("--rounds", type=int, default=15, help="rounds of --ack")
    args = parser.parse_args()
    if args.ack:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            print(json.dumps(ack_costs(Path(tmp), args.rounds), indent=2))
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        report = {
            "raw": raw_costs(directory),
            "journal": asyncio.run(bench(directory, args.n, journal=True)),
            "direct": asyncio.run(bench(directory, args.n, journal=False)),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
