"""Records -> rows: how each Python value is kept so that it comes back *equal*
(`_decode` reads the rows back).

Outputs (and run inputs) take one of four forms, recorded in ``output_kind``:

``json``
    The value survives ``json.dumps``/``json.loads`` unchanged in value *and* type:
    only None, bool, int, finite float, str (valid UTF-8), list, and dict with str
    keys, of exactly those types. JSON cannot tell a tuple from a list, ``1.0`` from
    ``1`` in every reader, keep a non-str key or a NaN, so anything else is not JSON.
``table``
    A pandas DataFrame or pyarrow Table becomes a real DuckDB table (``SELECT * FROM
    output_…`` works); its Arrow schema, with the pandas metadata (index, dtypes), is
    kept beside it so the read casts back to the very same types.
``pickle``
    Everything else, pickled (protocol 5). Only values this process wrote are ever
    unpickled, as with any pickle-based checkpointer.
``none``
    The record has no output.

This module is pure (no DuckDB): rows are tuples of str/int/float/bytes/None that
both the journal and the SQL upsert take as they are.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wfnb.errors import StoreError
from wfnb.model import RunStatus, StepStatus
from wfnb.store.base import RUN_EVENTS, STEP_EVENTS, Batch

JSON, TABLE, PICKLE, NONE = "json", "table", "pickle", "none"
_MAX_JSON_DEPTH = 200
#: ``json.dumps`` with options builds a new encoder per call; one, made once
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode

#: status (member or value) -> value: a dict lookup, where ``StepStatus(x)`` was
#: ≈ 1 µs per step record
_STEP_STATUS: dict[Any, str] = {m: m.value for m in StepStatus}

WorkflowRow = tuple[Any, ...]
RunRow = tuple[Any, ...]
StepRow = tuple[Any, ...]
CallRow = tuple[Any, ...]
EventRow = tuple[Any, ...]


@dataclass(slots=True)
class PendingTable:
    """A table output on its way into DuckDB; ``value`` is kept to pickle it instead
    if DuckDB cannot give its types back exactly."""

    name: str
    arrow: Any  # pyarrow.Table
    value: Any


@dataclass(slots=True)
class EncodedBatch:
    workflows: list[WorkflowRow] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)
    steps: list[StepRow] = field(default_factory=list)
    calls: list[CallRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    tables: list[PendingTable] = field(default_factory=list)

    @property
    def rows(self) -> tuple[list[Any], ...]:
        return self.workflows, self.runs, self.steps, self.calls, self.events


def table_name(run_id: str, step_id: str, attempt: int) -> str:
    """Deterministic per step attempt, so an upsert replaces the same table."""
    key = f"{run_id}\x00{step_id}\x00{attempt}".encode()
    return "output_" + hashlib.sha1(key, usedforsecurity=False).hexdigest()[:20]


#: DuckDB TIMESTAMPs end in the year 294247; checked here, not at fold time (see
#: `encode_batch`).
_MAX_EPOCH = 9e12


def to_us(t: float | None) -> int | None:
    if t is None:
        return None
    if not -_MAX_EPOCH < t < _MAX_EPOCH:  # also refuses NaN
        raise StoreError(f"time {t!r} is not an epoch time DuckDB can store")
    return round(t * 1_000_000)


def _key(value: str | None, what: str, *, optional: bool = False) -> str | None:
    """``value`` if it is a str DuckDB takes as a key (valid UTF-8), else `StoreError`.

    The ASCII test below, the common case, is inlined in `encode_batch` for step and
    event keys (five a step), calling this only when it fails: the call costs more
    than the test. Measured on a 200-step batch of `Batch.changes` (both versions
    interleaved in one process, best of 40): 189 µs inlined against 224 µs with the
    calls without outputs, 756 against 789 µs with a JSON output a step."""
    if type(value) is str and value.isascii():  # the common case, first: ≈ 10 per step
        return value
    if value is None and optional:
        return None
    if type(value) is not str or not _utf8(value):
        raise StoreError(f"{what} {value!r} must be a str of valid UTF-8")
    return value


def _text(value: str | None) -> str | None:
    """Free text (errors, definitions) made storable: DuckDB VARCHARs are UTF-8, so
    lone surrogates become backslash escapes rather than failing the checkpoint.
    `encode_batch` tests for None before calling it for step and event fields
    (mostly None: the call cost more than the test)."""
    if value is None or value.isascii() or _utf8(value):
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


#: the last code_hashes encoded by `_code_hashes` (a copy) and its text, swapped
#: as one tuple (several threads encode: each store's writer, and event loops)
_last_code_hashes: list[tuple[dict[str, str], str]] = [({}, "{}")]


def _code_hashes(hashes: dict[str, str]) -> str:
    """A run's record carries one fingerprint per step: at 10,000 steps, checking
    each key and value on its own was most of encoding the run's records.

    Every record of a run carries the same map (three a run at least), so the last
    one encoded is kept and reused while the map holds the very same keys and values
    in the same order (by identity: an equal value's own ``__eq__`` is not trusted,
    nor is an equal map in another order): 200 entries take 4 µs to check,
    ``json.dumps`` 56 µs."""
    last, text = _last_code_hashes[0]
    if (
        type(hashes) is dict
        and len(hashes) == len(last)
        and all(map(operator.is_, hashes, last))
        and all(map(operator.is_, hashes.values(), last.values()))
    ):  # the very str objects `_all_str` passed, in the same order: the same text
        return text
    if type(hashes) is dict and _all_str(hashes):
        text = json.dumps(hashes)
        _last_code_hashes[0] = (dict(hashes), text)
        return text
    if not (type(hashes) is dict and _json_exact(hashes)):
        raise StoreError(f"code_hashes must map str to str, not {hashes!r}")
    return json.dumps(hashes)


def _all_str(mapping: dict[Any, Any]) -> bool:
    """True if every key and value is an ASCII ``str`` (so valid UTF-8), checked
    with one ``isascii`` over their concatenation."""
    keys, values = list(mapping), list(mapping.values())
    if {*map(type, keys), *map(type, values)} - {str}:
        return False
    return ("".join(keys) + "".join(values)).isascii()


def _call_data(data: dict[str, Any], what: str) -> str:
    if not (type(data) is dict and _json_exact(data)):
        raise StoreError(f"the data of {what} must be plain JSON, not {data!r}")
    return json.dumps(data)


#: what a DuckDB INTEGER holds (``x in _INT32`` is one C-level test, cheap enough
#: to inline on the hot path before calling `_int32` for its message)
_INT32 = range(-(2**31), 2**31)


def _int32(value: int, what: str) -> int:
    if type(value) is not int or value not in _INT32:
        raise StoreError(f"{what} {value!r} must be an int that fits in 32 bits")
    return value


def from_us(us: int | None) -> float | None:
    return None if us is None else us / 1_000_000


# -- values -------------------------------------------------------------------------
def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: JSON text would not be valid UTF-8
        return False
    return True


def _json_exact(value: Any) -> bool:
    return json_weight(value, sys.maxsize) >= 0


def json_weight(value: Any, budget: int, depth: int = 0) -> int:
    """``budget`` less what ``value`` weighs (≈ bytes) if JSON gives it back exactly
    (in value and type: no tuples, non-str keys, NaN, lone surrogates, …);
    negative if it does not, or once the budget is spent. One walk answers both
    whether a value is stored as JSON and whether it is light enough to encode on
    the event loop (``_turns``), so the two never disagree on what is plain."""
    kind = type(value)
    if value is None or kind is bool:
        return budget - 8
    if kind is int:
        bits: int = value.bit_length()
        return budget - 8 - bits // 8
    if kind is str:  # (its length first: encoding a long string only to find it heavy is not)
        left = budget - 8 - len(value)
        return left if left < 0 or _utf8(value) else -1
    if kind is float:
        return budget - 8 if math.isfinite(value) else -1
    if depth > _MAX_JSON_DEPTH or budget < 0:
        return -1
    if kind is list:
        budget -= 8 * len(value)
        for item in value:
            budget = json_weight(item, budget, depth + 1)
            if budget < 0:
                break
        return budget
    if kind is dict:
        budget -= 8 * len(value)
        for key, item in value.items():
            if type(key) is not str:
                return -1
            budget -= len(key)
            if budget < 0:
                break
            if not _utf8(key):
                return -1
            budget = json_weight(item, budget, depth + 1)
            if budget < 0:
                break
        return budget
    return -1


def _exact_in_duckdb(pa: Any, kind: Any, *, lists: bool = True) -> bool:
    """Arrow types DuckDB keeps losslessly (checked by round trip; see the tests).
    Others (float16, intervals, durations, dictionaries of non-strings, …) are
    refused or changed by DuckDB, so such tables are pickled instead. ``lists`` is
    False for DataFrames: pandas reads an Arrow list back as a numpy array, not the
    Python list that went in."""
    t = pa.types
    if (
        t.is_integer(kind)
        or t.is_float32(kind)
        or t.is_float64(kind)
        or t.is_boolean(kind)
        or t.is_string(kind)
        or t.is_large_string(kind)
        or t.is_binary(kind)
        or t.is_large_binary(kind)
        or t.is_date32(kind)
        or t.is_timestamp(kind)
        or t.is_time(kind)
        or t.is_decimal128(kind)
        or t.is_null(kind)
    ):
        return True
    if t.is_dictionary(kind):  # pandas categoricals of strings
        return bool(t.is_string(kind.value_type) or t.is_large_string(kind.value_type))
    if t.is_list(kind) or t.is_large_list(kind):
        return lists and _exact_in_duckdb(pa, kind.value_type, lists=lists)
    if t.is_struct(kind):
        return all(
            _exact_in_duckdb(pa, kind.field(i).type, lists=lists) for i in range(kind.num_fields)
        )
    return False


def _to_arrow(value: Any) -> tuple[Any, str] | None:
    """The value as a pyarrow Table DuckDB can hold, or None. Looks pandas and
    pyarrow up in ``sys.modules`` so plain values never import them."""
    pd, loaded_pa = sys.modules.get("pandas"), sys.modules.get("pyarrow")
    if pd is not None and type(value) is pd.DataFrame:
        import pyarrow as pa

        if value.attrs:  # Arrow does not carry DataFrame.attrs: keep them by pickling
            return None
        try:
            table, origin = pa.Table.from_pandas(value), "pandas.DataFrame"
        except (pa.ArrowException, TypeError, ValueError):
            return None  # e.g. an object column of mixed types: pickle it
    elif loaded_pa is not None and type(value) is loaded_pa.Table:
        pa = loaded_pa
        table, origin = value, "pyarrow.Table"
    else:
        return None
    lists = origin == "pyarrow.Table"
    if not all(_exact_in_duckdb(pa, f.type, lists=lists) for f in table.schema):
        return None
    names = [n.lower() for n in table.schema.names]
    # DuckDB column names are case-insensitive and non-empty; a table without
    # columns cannot be created. Such tables are pickled instead.
    if not names or "" in names or len(set(names)) != len(names):
        return None
    return table, origin


def encode_value(value: Any, *, table: Callable[[], str] | None, what: str) -> tuple[Any, ...]:
    """``(kind, json_text, pickle_bytes, schema_bytes, PendingTable | None)``.

    ``table`` gives the table's name, asked for only if the value becomes a table
    (hashing it for every checkpoint was measurable on the durable path). Raises
    `StoreError` if the value can be kept in none of the forms."""
    if _json_exact(value):
        try:
            text = _JSON_TEXT(value)
        except (ValueError, RecursionError):  # e.g. an int past the str-digits limit
            pass
        else:
            return JSON, text, None, None, None
    if table is not None and (arrow := _to_arrow(value)) is not None:
        tbl, origin = arrow
        name = table()
        ref = json.dumps(
            {"table": name, "type": origin, "rows": tbl.num_rows, "columns": tbl.schema.names}
        )
        schema = tbl.schema.serialize().to_pybytes()
        return TABLE, ref, None, schema, PendingTable(name, tbl, value)
    return PICKLE, None, pickled(value, what=what), None, None


def pickled(value: Any, *, what: str) -> bytes:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception as exc:  # pickle raises many types (TypeError, PicklingError, …)
        raise StoreError(
            f"{what}: a {type(value).__name__} cannot be stored "
            f"(not JSON, not a table, not picklable: {exc})"
        ) from exc


def decode_value(
    kind: str, text: str | None, blob: bytes | None, table: Any = None, schema: bytes | None = None
) -> Any:
    if kind == JSON:
        return json.loads(text) if text is not None else None
    if kind == PICKLE:
        return pickle.loads(blob) if blob is not None else None
    if kind == TABLE:
        import pyarrow as pa

        want = pa.ipc.read_schema(pa.py_buffer(schema))
        restored = table.cast(want)
        if json.loads(text or "{}").get("type") == "pandas.DataFrame":
            return restored.to_pandas()
        return restored
    return None


# -- records ------------------------------------------------------------------------
_NO_TIME = object()


def encode_batch(batch: Batch) -> EncodedBatch:
    """Rows for every record of ``batch``; raises `StoreError` before anything is
    written if one value cannot be kept, which is what makes a batch all-or-nothing.

    Every field is checked here, at acknowledgement, against what DuckDB accepts:
    a row that reached the journal but that DuckDB refused when folding would be an
    acknowledged checkpoint that never reaches the tables."""
    try:
        return _encode(batch)
    except StoreError:
        raise
    except Exception as exc:  # a malformed record (a wrong type in a field)
        raise StoreError(f"cannot store the batch: {exc!r}") from exc


def _encode(batch: Batch) -> EncodedBatch:
    out = EncodedBatch()
    for w in batch.workflows:
        out.workflows.append(
            (
                _key(w.name, "workflow name"),
                _text(w.definition) or "",
                _key(w.definition_hash, "definition hash"),
                to_us(w.created_at),
            )
        )
    for r in batch.runs:
        _, text, blob, _, _ = encode_value(r.inputs, table=None, what=f"inputs of run {r.run_id}")
        out.runs.append(
            (
                _key(r.run_id, "run id"),
                _key(r.workflow, "workflow"),
                _key(r.definition_hash, "definition hash"),
                RunStatus(r.status).value,
                text,
                blob,
                _key(r.parent_run_id, "parent run id", optional=True),
                _key(r.parent_step_id, "parent step id", optional=True),
                _int32(r.depth, "depth"),
                _text(r.owner),
                to_us(r.created_at),
                to_us(r.started_at),
                to_us(r.ended_at),
                _text(r.error),
                _key(r.failed_step, "failed step", optional=True),
                _code_hashes(r.code_hashes),
            )
        )
    for s in batch.steps:
        # `_key`'s fast path, inlined (see its docstring)
        if not (type(s.run_id) is str and s.run_id.isascii()):
            _key(s.run_id, "run id")
        if not (type(s.step_id) is str and s.step_id.isascii()):
            _key(s.step_id, "step id")
        if not (type(a := s.attempt) is int and a in _INT32):
            _int32(a, "attempt")  # raises; the test is `_int32`'s, inlined like `_key`'s
        pending = None
        if s.has_output and s.output is None:  # skips a message and a partial per step
            kind, text, blob, schema = JSON, "null", None, None
        elif s.has_output:
            kind, text, blob, schema, pending = encode_value(
                s.output,
                table=functools.partial(table_name, s.run_id, s.step_id, s.attempt),
                what=f"output of step {s.step_id!r} of run {s.run_id}",
            )
        else:
            kind, text, blob, schema = NONE, None, None, None
        if pending is not None:
            out.tables.append(pending)
        out.steps.append(
            (
                s.run_id,
                s.step_id,
                s.attempt,
                _STEP_STATUS.get(s.status) or StepStatus(s.status).value,
                to_us(s.started_at),
                to_us(s.ended_at),
                error if (error := s.error) is None else _text(error),
                text,
                kind,
                None if pending is None else pending.name,
                blob,
                schema,
                worker if (worker := s.worker) is None else _text(worker),
                trace if (trace := s.traceback) is None else _text(trace),
            )
        )
    for c in batch.calls:
        what = f"call {c.seq} of step {c.step_id!r} of run {c.run_id}"
        out.calls.append(
            (
                _key(c.run_id, "run id"),
                _key(c.step_id, "step id"),
                _int32(c.attempt, "attempt"),
                _int32(c.seq, "seq"),
                _key(c.kind, "call kind"),
                to_us(c.started_at),
                _call_data(c.data, what),
            )
        )
    derived = batch.derived_events
    if derived is not None:
        out.events = _derived_event_rows(derived.at, out)
        return out
    last_at: Any = _NO_TIME
    at = None
    for e in batch.events:
        if e.at is not last_at:  # `Batch.changes` gives its events one time object
            last_at, at = e.at, to_us(e.at)
            if at is None:  # events.ts is NOT NULL: refused now, not when folding
                raise StoreError(f"an event of run {e.run_id!r} has no time")
        run_id, step_id, status = e.run_id, e.step_id, e.status
        # `_key`'s fast path, inlined (see its docstring)
        if not (type(run_id) is str and run_id.isascii()):
            _key(run_id, "run id")
        if step_id is not None and not (type(step_id) is str and step_id.isascii()):
            _key(step_id, "step id")
        if not (type(status) is str and status.isascii()):
            _key(status, "status")
        attempt = e.attempt
        if attempt is not None and not (type(attempt) is int and attempt in _INT32):
            _int32(attempt, "attempt")  # raises
        error = e.error if e.error is None else _text(e.error)
        out.events.append((at, run_id, step_id, attempt, e.event, status, error))
    return out


#: where a run's and a step's row hold their status (both), and their errors
_STATUS, _RUN_ERROR, _STEP_ERROR = 3, 13, 6


def _derived_event_rows(when: float, out: EncodedBatch) -> list[EventRow]:
    """The rows of `Batch.changes`'s events, made from its runs' and steps' rows
    just encoded: an event repeats its record's keys (checked there), status and
    error, at the batch's one time. (`_encode`'s loop over other events, one
    `EventRecord` at a time, cost 10 % of the instructions of a durable no-op
    step, with the making of those records.)"""
    if not out.runs and not out.steps:  # (a batch of workflows alone: no time needed)
        return []
    at = to_us(when)
    if at is None:  # events.ts is NOT NULL: refused now, not when folding
        raise StoreError("a change of state has no time")
    # (a row's status is a member's value, checked: every one has an event name)
    rows = [
        (at, r[0], None, None, RUN_EVENTS[r[_STATUS]], r[_STATUS], r[_RUN_ERROR]) for r in out.runs
    ]
    rows += [
        (at, s[0], s[1], s[2], STEP_EVENTS[s[_STATUS]], s[_STATUS], s[_STEP_ERROR])
        for s in out.steps
    ]
    return rows
