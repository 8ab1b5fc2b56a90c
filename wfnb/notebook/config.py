"""``%config Wfnb.*``: the notebook's settings, and the one place a store is made.

A traitlets `Configurable` (traitlets is not IPython: the magics register it with
the shell so ``%config Wfnb.db = "runs.duckdb"`` works, as jupysql does).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from traitlets import Bool, Float, Unicode
from traitlets.config import Configurable

from wfnb.store.base import Store

log = logging.getLogger("wfnb.notebook")


class Wfnb(Configurable):
    """Settings of the wfnb extension (``%config Wfnb`` lists them)."""

    db = Unicode(
        "",
        help="The DuckDB file runs are checkpointed to. Empty: $WFNB_DB, else "
        ".wfnb/wfnb.duckdb under the kernel's working directory. Takes effect "
        "for the next run when no run is live.",
    ).tag(config=True)
    redraw_interval = Float(
        0.25, help="Seconds between two redraws of a live view (redraws are coalesced)."
    ).tag(config=True)
    live_view = Bool(True, help="Show the live view under %%workflow cells.").tag(config=True)


def store_path(db: str) -> Path:
    """Where the store lives: ``%config Wfnb.db``, else ``$WFNB_DB``, else the default."""
    if db:
        return Path(db).expanduser()
    env = os.environ.get("WFNB_DB")
    return Path(env).expanduser() if env else Path.cwd() / ".wfnb" / "wfnb.duckdb"


def make_store(db: str) -> Store:
    """The DuckDB store at `store_path`; the in-memory store (with a warning) where
    the DuckDB store is not available, so the magics still work, without durability."""
    try:
        from wfnb.store.duckdb import DuckDBStore
    except ImportError as exc:
        from wfnb.store.memory import MemoryStore

        log.warning("wfnb: DuckDB store unavailable (%s); runs are kept in memory only", exc)
        return MemoryStore()
    store: Store = DuckDBStore(store_path(db))
    return store
