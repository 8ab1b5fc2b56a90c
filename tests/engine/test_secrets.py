"""Secrets are masked in everything stored, published or shown (DESIGN §8), read
from the raw bytes of the DuckDB file and its journal; reruns get the real values."""

from __future__ import annotations

from pathlib import Path

import wfnb
from wfnb.events import EventKind
from wfnb.model import RunStatus, StepStatus

from ..conftest import arun, wf

SECRET = "sk-TOPSECRET-4242"
MARKER = "marker-prompt-7"  # stored beside the secret: proves the bytes are readable


def raw(db: Path) -> bytes:
    """Every byte wfnb keeps for this store: the file, DuckDB's WAL, the journal."""
    return b"".join(
        path.read_bytes()
        for path in db.parent.iterdir()
        if path.name.startswith(db.name) and path.is_file()
    )


def test_an_approval_prompt_is_masked_in_the_row_the_journal_the_events_and_results(tmp_path):
    db = tmp_path / "secrets.duckdb"
    # No fold and no idle close: the waiting row stays in the journal for us to read.
    store = wfnb.DuckDBStore(db, fold_idle=3600, fold_rows=10**6, idle_close=3600)
    engine = wfnb.Engine(store=store, secrets={"api": SECRET})
    text = "steps:\n  gate: {approval: {prompt: '" + MARKER + " send with {{ secrets.api }}?'}}\n"
    events = []

    async def main():
        engine.subscribe(events.append)
        handle = await engine.start(wf(text, name="secret_gate"))
        assert (await handle).status is RunStatus.PAUSED
        journal = (db.parent / (db.name + ".journal")).read_bytes()
        stored = {s.step_id: s for s in await store.get_steps(run_id=handle.id)}
        await store.flush()
        on_disk = raw(db)
        await engine.approve(handle.id, "gate", comment=f"ok {SECRET}")
        result = await handle.wait()
        await engine.close()
        return journal, stored, on_disk, result

    journal, stored, on_disk, result = arun(main())
    assert MARKER.encode() in journal and SECRET.encode() not in journal
    assert MARKER.encode() in on_disk and SECRET.encode() not in on_disk
    waiting = stored["gate"]
    assert waiting.status is StepStatus.WAITING_APPROVAL
    assert waiting.output["prompt"] == f"{MARKER} send with ***api***?"
    asked = [e for e in events if e.kind is EventKind.STEP_WAITING]
    assert asked and all(SECRET not in repr(e.data) for e in asked)
    assert asked[0].data["prompt"] == f"{MARKER} send with ***api***?"
    assert result.status is RunStatus.COMPLETED and SECRET not in repr(result)
    assert SECRET.encode() not in raw(db)


def test_a_rerun_hands_its_steps_the_secret_itself_and_keeps_code_hashes():
    seen = []

    def use(token):
        seen.append(token)
        return len(token)

    engine = wfnb.Engine(namespace={"use": use}, secrets={"api": SECRET})
    text = "inputs: {token: ''}\nsteps:\n  a: {code: use, with: {token: '{{ inputs.token }}'}}\n"

    async def main():
        first = await (await engine.start(wf(text, name="rerun_secret"), {"token": SECRET})).wait()
        again = await engine.rerun(first.run_id, "a")
        result = await again.wait()
        record = await engine.store.get_run(run_id=again.id)
        return first, result, record

    first, result, record = arun(main())
    assert seen == [SECRET, SECRET]
    assert result.status is RunStatus.COMPLETED and result["a"] == len(SECRET)
    assert record.inputs == {"token": "***api***"}  # stored masked
    assert set(record.code_hashes) == {"a"}
