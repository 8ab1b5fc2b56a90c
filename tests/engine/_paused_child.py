"""A process whose run waits for an approval; a line on stdin approves it.

python _paused_child.py DB   prints "paused RUN_ID", waits for a line, then "status S"
"""

from __future__ import annotations

import asyncio
import sys

import wfnb

GATED = """
steps:
  a: {code: one}
  gate: {approval: {prompt: 'go?'}, needs: [a]}
  b: {code: one, needs: [gate]}
"""


async def main(db: str) -> None:
    engine = wfnb.Engine(store=wfnb.DuckDBStore(db, lock_timeout=60), namespace={"one": lambda: 1})
    handle = await engine.start(wfnb.Workflow.from_yaml(GATED, name="gated"))
    paused = await handle
    print(f"{paused.status.value} {handle.id}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await engine.approve(handle.id, "gate", by="test")
    final = await handle.wait()
    print(f"status {final.status.value}", flush=True)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
