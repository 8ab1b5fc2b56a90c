"""The example workflow: fetch, branch, fan out, gather, with a retry and a
checkpoint per step. Runs headless with the same engine a notebook uses.

    python examples/etl.py
"""

from __future__ import annotations

import asyncio
import random

import pandas

import wfnb

WORKFLOW = """
inputs: {limit: 6}
steps:
  fetch:
    code: fetch_items
    with: {limit: "{{ inputs.limit }}"}
    retry: {max_attempts: 3, delay: 0.1}
  big_batch:
    needs: [fetch]
    conditional: {if: "steps.fetch.output | length > 3", then: [split], else: [as_is]}
  split:
    code: chunk
    with: {items: "{{ steps.fetch.output }}", size: 2}
  as_is:
    code: chunk
    with: {items: "{{ steps.fetch.output }}", size: 100}
  score_each:
    needs: [split, as_is]
    loop:
      for_each: "steps.split.output if steps.split.status == 'completed' else steps.as_is.output"
      body: [score]
  score:
    code: score_chunk
    with: {chunk: "{{ loop.item }}"}
  report:
    needs: [score_each]
    code: summarize
    with: {scores: "{{ steps.score_each.output.outputs | map(attribute='score') | list }}"}
"""

_failures = iter([True])  # the first fetch fails once, to show a retry


async def fetch_items(limit: int) -> list[dict]:
    await asyncio.sleep(0.05)
    if next(_failures, False):
        raise ConnectionError("upstream hiccup")
    return [{"id": i, "value": random.Random(i).randint(1, 100)} for i in range(limit)]


def chunk(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def score_chunk(chunk: list[dict]) -> float:
    await asyncio.sleep(0.02)
    return sum(item["value"] for item in chunk) / len(chunk)


def summarize(scores: list[float]) -> dict:
    return {"chunks": len(scores), "best": max(scores), "mean": round(sum(scores) / len(scores), 2)}


def main() -> None:
    store = wfnb.DuckDBStore()  # .wfnb/wfnb.duckdb here, or $WFNB_DB
    engine = wfnb.Engine(store=store, namespace=globals())
    workflow = wfnb.Workflow.from_yaml(WORKFLOW, name="etl")
    result = engine.run_sync(workflow)
    print(f"run {result.run_id} of workflow 'etl': {result.status.value}")
    print(f"report: {result.outputs.get('report')}\n")
    print(f"every attempt, from the history in {store.path}:")
    timeline = store.sql(
        "SELECT step_id, attempt, status, start_offset_ms, duration_ms, error "
        f"FROM run_timeline WHERE run_id = '{result.run_id}' ORDER BY start_offset_ms, step_id"
    )
    with pandas.option_context("display.width", 120, "display.max_colwidth", 40):
        print(timeline.fillna("").to_string(index=False))
    runs = store.sql("SELECT count(*) AS runs FROM runs WHERE workflow = 'etl'")
    print(f"\n{runs.runs[0]} run(s) of 'etl' in the history so far.")
    if not result.ok:
        raise SystemExit(result.error)


if __name__ == "__main__":
    main()
