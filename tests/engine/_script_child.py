"""Scripts that leave a run paused, as users write them.

python _script_child.py close DB    start, pause, engine.close(); "paused RUN_ID";
                                    then stays alive until a line arrives on stdin
python _script_child.py return DB   start, pause, return from asyncio.run; "left RUN_ID"
python _script_child.py split DB    run_sync to the pause, approve in one asyncio.run,
                                    wait in another: "status S"
python _script_child.py resume DB   same, but resume (then wait) in the third
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


def engine(db: str) -> wfnb.Engine:
    return wfnb.Engine(store=wfnb.DuckDBStore(db, lock_timeout=60), namespace={"one": lambda: 1})


def gated() -> wfnb.Workflow:
    return wfnb.Workflow.from_yaml(GATED, name="gated")


async def until_paused(eng: wfnb.Engine) -> str:
    handle = await eng.start(gated())
    result = await handle
    assert result.status is wfnb.RunStatus.PAUSED, result
    return handle.id


def main(mode: str, db: str) -> None:
    if mode == "close":
        eng = engine(db)

        async def close() -> str:
            run_id = await until_paused(eng)
            await eng.close()
            return run_id

        print(f"paused {asyncio.run(close())}", flush=True)
        sys.stdin.readline()
    elif mode == "return":
        eng = engine(db)
        print(f"left {asyncio.run(until_paused(eng))}", flush=True)
    else:
        eng = engine(db)
        paused = eng.run_sync(gated())
        asyncio.run(eng.approve(paused.run_id, "gate", by="script"))
        if mode == "resume":

            async def resume() -> wfnb.RunResult:
                return await (await eng.resume(paused.run_id)).wait()

            final = asyncio.run(resume())
        else:
            final = asyncio.run(eng.wait(paused.run_id))
        print(f"status {final.status.value}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
