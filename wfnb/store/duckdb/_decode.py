"""Rows -> records: what the store's reads give back, the inverse of
`_codec.encode_batch` (times from microseconds, outputs and inputs by their kind;
see `_codec` for how each value is kept)."""

from __future__ import annotations

import json
from typing import Any

from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import CallRecord, EventRecord, RunRecord, StepRecord, WorkflowRecord
from wfnb.store.duckdb._codec import JSON, NONE, PICKLE, decode_value, from_us


def decode_event(row: tuple[Any, ...]) -> EventRecord:
    at, run_id, step_id, attempt, status, error = row
    return EventRecord(run_id, status, from_us(at) or 0.0, step_id, attempt, error)


def decode_workflow(row: tuple[Any, ...]) -> WorkflowRecord:
    name, definition, definition_hash, created = row
    return WorkflowRecord(
        name=name,
        definition=definition,
        definition_hash=definition_hash,
        created_at=from_us(created) or 0.0,
    )


def decode_run(row: tuple[Any, ...]) -> RunRecord:
    (
        run_id,
        workflow,
        definition_hash,
        status,
        text,
        blob,
        parent_run_id,
        parent_step_id,
        depth,
        owner,
        created,
        started,
        ended,
        error,
        failed_step,
        code_hashes,
    ) = row
    return RunRecord(
        run_id=run_id,
        workflow=workflow,
        definition_hash=definition_hash,
        status=RunStatus(status),
        inputs=decode_value(JSON if blob is None else PICKLE, text, blob),
        created_at=from_us(created) or 0.0,
        started_at=from_us(started),
        ended_at=from_us(ended),
        error=error,
        failed_step=failed_step,
        parent_run_id=parent_run_id,
        parent_step_id=parent_step_id,
        depth=depth,
        owner=owner,
        code_hashes=json.loads(code_hashes) if code_hashes else {},
    )


def decode_step(row: tuple[Any, ...], table: Any = None) -> StepRecord:
    (
        run_id,
        step_id,
        attempt,
        status,
        started,
        ended,
        error,
        text,
        kind,
        _table_name,
        blob,
        schema,
        worker,
        traceback,
    ) = row
    return StepRecord(
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        status=StepStatus(status),
        started_at=from_us(started),
        ended_at=from_us(ended),
        error=error,
        output=decode_value(kind, text, blob, table, schema),
        has_output=kind != NONE,
        worker=worker,
        traceback=traceback,
    )


def decode_call(row: tuple[Any, ...]) -> CallRecord:
    run_id, step_id, attempt, seq, kind, started, data = row
    return CallRecord(
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        seq=seq,
        kind=kind,
        started_at=from_us(started) or 0.0,
        data=json.loads(data) if data else {},
    )
