"""Property test: whatever mix of plain Python values a step returns, the DuckDB
store gives back the same values with the same types (JSON where exact, pickle
otherwise), through the journal and after a reopen."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import Batch, RunRecord, StepRecord
from wfnb.store.duckdb import DuckDBStore
from wfnb.testing import assert_same_value

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(max_size=8)
)
keys = st.text(max_size=5) | st.integers() | st.booleans() | st.tuples(st.integers())
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=4)
        | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    outputs=st.lists(values, min_size=1, max_size=6),
    inputs=st.dictionaries(st.text(max_size=4), values, max_size=3),
)
def test_values_round_trip_exactly_through_journal_and_reopen(
    outputs: list[Any], inputs: dict[str, Any]
) -> None:
    async def go(db: Path) -> None:
        run = RunRecord("r", "w", "h", RunStatus.RUNNING, inputs, 1.0)
        steps = [
            StepRecord(
                "r", f"s{i}", 1, StepStatus.COMPLETED, float(i), output=value, has_output=True
            )
            for i, value in enumerate(outputs)
        ]
        store = DuckDBStore(db)
        await store.write(Batch(runs=[run], steps=steps))
        for _ in range(2):  # first from the freshly folded journal, then after a reopen
            got = await store.get_steps(run_id="r")
            assert [s.step_id for s in got] == [s.step_id for s in steps]
            for record, want in zip(got, outputs, strict=True):
                assert_same_value(record.output, want)
            stored_run = await store.get_run(run_id="r")
            assert stored_run is not None
            assert_same_value(stored_run.inputs, inputs)
            await store.close()
            store = DuckDBStore(db)
        await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(go(Path(tmp) / "p.duckdb"))
