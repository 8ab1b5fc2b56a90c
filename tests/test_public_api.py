import subprocess
import sys
from pathlib import Path

import wfnb

#: module attributes that are not for users to type: IPython looks them up
IPYTHON_HOOKS = {"load_ipython_extension", "unload_ipython_extension"}


def test_all_is_sorted_and_complete():
    public = sorted(
        name
        for name in dir(wfnb)
        if not name.startswith("_")
        and name not in {"annotations", *IPYTHON_HOOKS}
        and not _is_module(name)
    )
    assert wfnb.__all__ == sorted(wfnb.__all__)
    assert sorted(wfnb.__all__) == public


def test_the_ipython_hooks_stay_module_attributes_outside_all():
    for hook in IPYTHON_HOOKS:
        assert callable(getattr(wfnb, hook))
        assert hook not in wfnb.__all__


def test_the_planner_is_not_public_and_the_store_records_are():
    assert not {"Plan", "build_plan", "ready_steps"} & set(wfnb.__all__)
    for name in ("Batch", "RunRecord", "StepRecord", "WorkflowRecord"):
        assert getattr(wfnb, name) is getattr(wfnb.store, name)
        assert name in wfnb.store.__all__


def _is_module(name: str) -> bool:
    return type(getattr(wfnb, name)).__name__ == "module"


def test_every_error_derives_from_wfnb_error():
    for name in wfnb.__all__:
        obj = getattr(wfnb, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, wfnb.WfnbError), name


def test_importing_the_engine_loads_no_notebook_or_storage_library():
    code = (
        "import sys, wfnb, wfnb.engine; "
        "print(','.join(m for m in ('IPython', 'ipywidgets', 'graphviz', 'duckdb', 'httpx', "
        "'distributed', 'dask') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_durable_headless_run_without_templates_loads_no_module_it_does_not_use(
    tmp_path: Path,
) -> None:
    """What a headless durable run does not use costs memory (issue 13): Jinja2
    loads with the first template, pandas and pyarrow with the first table,
    difflib with the first "did you mean" hint."""
    code = f"""
import asyncio, sys
import wfnb

async def main():
    store = wfnb.DuckDBStore({str(tmp_path / "wfnb.duckdb")!r})
    engine = wfnb.Engine(store=store, namespace={{"f": lambda: 1}})
    workflow = wfnb.Workflow.from_yaml("steps:\\n  a: {{code: f}}\\n  b: {{code: f, needs: [a]}}", name="w")
    assert (await (await engine.start(workflow))).ok
    await store.flush()
    await engine.close()

asyncio.run(main())
print(",".join(m for m in ("jinja2", "pandas", "pyarrow", "difflib") if m in sys.modules))
"""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_duckdb_names_load_on_first_use():
    code = (
        "import sys, wfnb; before = 'duckdb' in sys.modules; "
        "store_cls = wfnb.DuckDBStore; "
        "print(before, 'duckdb' in sys.modules, store_cls.__name__, callable(wfnb.sql))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "DuckDBStore", "True"]


def test_the_dask_backend_loads_on_first_use_and_distributed_only_when_it_connects():
    code = (
        "import sys, wfnb; before = 'wfnb.backends.dask' in sys.modules; "
        "backend = wfnb.DaskBackend(address='tcp://127.0.0.1:1'); "
        "print(before, 'wfnb.backends.dask' in sys.modules, 'distributed' in sys.modules, "
        "isinstance(backend, wfnb.Backend))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "False", "True"]
