"""``%config Wfnb.*``: the notebook's settings, and the one place a store is made.

A traitlets `Configurable` (traitlets is not IPython: the magics register it with
the shell so ``%config Wfnb.db = "runs.duckdb"`` works, as jupysql does).
"""

from __future__ import annotations

from pathlib import Path

from traitlets import Bool, Float, Unicode
from traitlets.config import Configurable

from wfnb.model import AgentDefaults
from wfnb.store.base import Store


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
    agent_base_url = Unicode(
        "",
        help="Where agent steps send chat completions when neither the step nor its "
        "workflow says (e.g. http://localhost:11434/v1). Empty: $OPENAI_BASE_URL.",
    ).tag(config=True)
    agent_model = Unicode(
        "", help="The model of agent steps that name none. Empty: $WFNB_AGENT_MODEL."
    ).tag(config=True)

    def agent_defaults(self) -> AgentDefaults:
        return AgentDefaults(base_url=self.agent_base_url or None, model=self.agent_model or None)


def make_store(db: str) -> Store:
    """The DuckDB store: at ``db`` when set, else where `DuckDBStore` looks by
    default (``$WFNB_DB``, else ``.wfnb/wfnb.duckdb`` under the working directory).
    Imported here, lazily, so loading the extension does not load DuckDB."""
    from wfnb.store.duckdb import DuckDBStore

    store: Store = DuckDBStore(Path(db).expanduser() if db else None)
    return store
