"""The ``store`` fixture: one fresh, empty store per test, chosen by name through
``@pytest.mark.parametrize("store", IMPLEMENTATIONS, indirect=True)``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wfnb.store.base import Store
from wfnb.store.memory import MemoryStore
from wfnb.testing import close_store

IMPLEMENTATIONS = ["memory", "duckdb"]


def frames_only(journal: Path) -> bytes:
    """The journal without its preallocated zeros (a frame ends in a pickle's STOP)."""
    return journal.read_bytes().rstrip(b"\0")


def make_store(name: str, tmp_path: Path) -> Store:
    if name == "memory":
        return MemoryStore()
    if name == "duckdb":
        from wfnb.store.duckdb import DuckDBStore

        return DuckDBStore(tmp_path / "wfnb.duckdb", lock_timeout=5.0)
    raise ValueError(f"unknown store {name!r}")


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    created = make_store(request.param, tmp_path)
    yield created
    close_store(created)
