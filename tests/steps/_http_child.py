"""The process the http crash test kills: one http step on a DuckDB file.

python _http_child.py start DB URL        prints "run RUN_ID", then "status S"
python _http_child.py resume DB RUN_ID    prints "status S"
"""

from __future__ import annotations

import asyncio
import sys

import wfnb
from wfnb.store.duckdb import DuckDBStore


async def main(mode: str, db: str, arg: str) -> None:
    engine = wfnb.Engine(store=DuckDBStore(db))
    try:
        if mode == "start":
            text = f'steps:\n  pay: {{http: {{url: "{arg}", method: POST, json: {{amount: 5}}}}}}'
            handle = await engine.start(wfnb.Workflow.from_yaml(text, name="payment"))
            print(f"run {handle.id}", flush=True)
        else:
            handle = await engine.resume(arg)
        result = await handle.wait()
        print(f"status {result.status.value}", flush=True)
    finally:
        await engine.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
