"""The writer thread's per-row work on the durable path, without the engine around it.

    python benchmarks/bench_fold.py                  # 80 fan-out runs of 200 steps
    python benchmarks/bench_fold.py --shape waves --runs 40 --repeat 9

`bench_engine.py --store duckdb` measures one run on a fresh store: its journal is
folded into DuckDB after the measurement, so its run figures leave the fold out and
it prints that run's fold alone beside them; a long session folds once every
``fold_rows`` journal rows instead. This benchmark records the batches that
``--runs`` durable runs write, then replays the writer's work on them alone:
``encode_batch`` of every batch (done at acknowledgement), and the fold of the
encoded rows into a fresh store file every 16,000 journal rows (the default
``fold_rows``), one transaction each, as the writer does. It prints CPU µs per step
(process time; DuckDB runs on one thread), min and median of ``--repeat``, for the
encoding, the whole fold and each table's statement.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import shapes
from bench_engine import waves, workflow_of

import wfnb
from wfnb.store.base import Batch
from wfnb.store.duckdb import DuckDBStore, _codec, _lock, _schema, _upsert

FOLD_ROWS = 16_000


async def record(shape: str, runs: int, tmp: Path) -> list[Batch]:
    """The batches ``runs`` durable runs of ``shape`` hand the store (recorded where
    they enter it: the writer thread sees only some of them, and some encoded
    already, since light writes are journalled on the loop's thread)."""
    batches: list[Batch] = []
    write = DuckDBStore.write

    async def recording(self: DuckDBStore, batch: Batch) -> None:
        batches.append(batch)
        await write(self, batch)

    DuckDBStore.write = recording  # type: ignore[method-assign]
    try:
        wf = workflow_of(shapes.fan_out(200)) if shape == "fan" else waves(20, 10)
        engine = wfnb.Engine(
            store=DuckDBStore(tmp / "record.duckdb"), namespace={"noop": shapes.noop}
        )
        for _ in range(runs):
            await (await engine.start(wf))
        await engine.close()
    finally:
        DuckDBStore.write = write  # type: ignore[method-assign]
    return batches


def replay(batches: list[Batch], path: Path, per_table: dict[str, float]) -> tuple[float, float]:
    """CPU seconds of encoding ``batches`` and of folding their rows into ``path``."""
    started = time.process_time()
    encoded = [_codec.encode_batch(b) for b in batches]
    encode = time.process_time() - started
    con = _lock.connect_with_retry(path, 10)
    _schema.migrate(con)

    def fold(rows: list[list[Any]]) -> None:
        con.execute("BEGIN")
        _upsert.upsert(con, *rows)
        _schema.set_folded_seq(con, 1)
        con.execute("COMMIT")

    write = _upsert._write

    def timed(con: Any, table: str, rows: Any) -> None:
        t = time.process_time()
        write(con, table, rows)
        per_table[table] += time.process_time() - t

    _upsert._write = timed
    try:
        started = time.process_time()
        pending: list[list[Any]] = [[] for _ in range(5)]
        n = 0
        for e in encoded:
            for acc, part in zip(pending, e.rows, strict=True):
                acc.extend(part)
            n += sum(len(part) for part in e.rows)
            if n >= FOLD_ROWS:
                fold(pending)
                pending, n = [[] for _ in range(5)], 0
        if n:
            fold(pending)
        folding = time.process_time() - started
    finally:
        _upsert._write = write
        con.close()
    return encode, folding


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["fan", "waves"], default="fan")
    parser.add_argument("--runs", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        batches = asyncio.run(record(args.shape, args.runs, Path(tmp)))
        steps = args.runs * 200
        figures: dict[str, list[float]] = collections.defaultdict(list)
        for i in range(args.repeat):
            per_table: dict[str, float] = collections.defaultdict(float)
            encode, folding = replay(batches, Path(tmp) / f"fold-{i}.duckdb", per_table)
            figures["encode"].append(encode)
            figures["fold"].append(folding)
            for table, seconds in per_table.items():
                figures[f"  {table}"].append(seconds)
    print(f"{args.runs} runs of '{args.shape}', 200 steps each")
    print(f"CPU µs/step, min and median of {args.repeat}")
    for name, seconds in figures.items():
        low, mid = min(seconds) / steps * 1e6, statistics.median(seconds) / steps * 1e6
        print(f"{name:<12}{low:>8.2f}{mid:>8.2f}")


if __name__ == "__main__":
    main()
