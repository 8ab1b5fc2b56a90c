"""``%config Wfnb.*``: the notebook's settings, and the one place a store and a
backend are made.

A traitlets `Configurable` (traitlets is not IPython: the magics register it with
the shell so ``%config Wfnb.db = "runs.duckdb"`` works, as jupysql does).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Float, TraitError, Unicode, validate
from traitlets.config import Configurable

from wfnb.backends.base import Backend
from wfnb.backends.local import LocalBackend
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
    backend = Unicode(
        "local",
        help='Where code and skill steps run: "local" (this kernel), "dask" (a Dask '
        'LocalCluster the kernel starts) or "tcp://HOST:PORT" (an existing Dask '
        "scheduler). Takes effect for the next run when no run is live.",
    ).tag(config=True)

    @validate("backend")
    def _check_backend(self, proposal: dict[str, Any]) -> str:
        value = str(proposal["value"]).strip()
        if value in ("local", "dask") or "://" in value:
            return value
        raise TraitError(
            f'Wfnb.backend must be "local", "dask" or a scheduler address such as '
            f'"tcp://HOST:PORT", not {value!r}'
        )

    dask_cluster = Dict(
        help='Options of the LocalCluster that Wfnb.backend = "dask" starts, as '
        'distributed.LocalCluster takes them (e.g. {"n_workers": 4, '
        '"threads_per_worker": 1}). Takes effect for the next run when no run is live.',
    ).tag(config=True)

    @validate("dask_cluster")
    def _check_dask_cluster(self, proposal: dict[str, Any]) -> dict[str, Any]:
        """What can be told now; any other option is LocalCluster's to judge when it
        starts (a step then fails saying so, see `DaskBackend`)."""
        options = dict(proposal["value"])
        wrong = [key for key in options if not (isinstance(key, str) and key.isidentifier())]
        if wrong:
            raise TraitError(
                f"Wfnb.dask_cluster takes LocalCluster options by name, not {wrong[0]!r}"
            )
        from wfnb.backends.dask import cluster_options_problem  # (as in make_backend)

        problem = cluster_options_problem(options)
        if problem is not None:
            raise TraitError(f"Wfnb.dask_cluster: {problem}")
        return options

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


def make_backend(setting: str, cluster: dict[str, Any] | None = None) -> Backend:
    """The backend ``Wfnb.backend`` names; ``cluster`` (``Wfnb.dask_cluster``) sizes
    the LocalCluster of ``"dask"``, and is only said to be unused with any other
    (a cluster someone else runs is used as it is). The Dask one is imported only if
    named (and loads `distributed` only when its first step runs)."""
    if cluster and setting != "dask":
        print(
            f'wfnb: Wfnb.dask_cluster sizes the cluster of Wfnb.backend = "dask", not of '
            f"{setting!r}: not used",
            file=sys.stderr,
        )
    if setting == "local":
        return LocalBackend()
    from wfnb.backends.dask import DaskBackend

    if setting == "dask":
        return DaskBackend(**(cluster or {}))
    return DaskBackend(address=setting)


def dashboard_link(backend: Backend) -> str | None:
    """The Dask dashboard of the engine's cluster, for the live view to link to
    (None for the local backend, or before the cluster is reached)."""
    link = getattr(backend, "dashboard_link", None)
    return link if isinstance(link, str) else None
