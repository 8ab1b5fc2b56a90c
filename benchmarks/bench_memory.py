"""Peak memory of ``import wfnb`` plus one durable 200-step run, in a fresh process.

    python benchmarks/bench_memory.py            # fan-out of 200 on a DuckDBStore
    python benchmarks/bench_memory.py --steps 1000 --repeat 5

Each measurement runs in its own subprocess (peak RSS only ever grows, so one
process per figure) and reads ``ru_maxrss``: a fan-out and a chain on a new store
file, and the fan-out again on a file that earlier runs made (a kernel's second
run). Printed beside it: the peak of a bare ``python -c pass``, and whether the
heavy table libraries (pandas, pyarrow, numpy) were loaded: they should load only
when a table is asked for.

Peaks vary between fresh processes by up to ≈ 2 MB (where glibc and DuckDB's
jemalloc happen to place the fold's memory), so each workload runs ``--repeat``
times and the range is printed.

Then the floor: what the same peak is without wfnb, each line in a fresh process:
Python, then ``import asyncio``, ``import duckdb``, a new DuckDB file opened as the
store opens it (its block size and settings, `wfnb.store.duckdb._tuning`), and the
store's schema made by the same statements the store runs (recorded from
`wfnb.store.duckdb._schema.migrate`, so that process never imports wfnb). What a
run peaks at above the last line is wfnb's share.

Then where it goes: the fan-out again in one more process, with ``VmRSS`` (split
into anonymous and file-backed pages: a shared library's code counts as file pages)
and the peak so far (``VmHWM``) from ``/proc/self/status`` at each point: at start,
after ``import wfnb`` (asyncio included), after importing the DuckDB store, once the
store is open (schema made), after the run, after the journal is folded into
DuckDB, and after close.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

HEAVY = ("pandas", "pyarrow", "numpy", "networkx")

#: how a child process builds the workflow, with wfnb alone: the shape comes as
#: data (from `shapes`, run in a process of its own), so that the benchmark's modules
#: (argparse, statistics, bench_engine, shapes: ≈ 1.2 MB after import) are not
#: counted as wfnb's. The same steps as `bench_engine.workflow_of` makes.
WORKFLOW = """
async def noop():
    return None

def the_workflow():
    steps = {{
        sid: {{"code": "noop", **({{"needs": needs}} if needs else {{}})}}
        for sid, needs in {needs!r}.items()
    }}
    return wfnb.Workflow(name="bench", steps=steps)
"""

RUN = """
import asyncio, json, resource, sys
import wfnb
from wfnb.store.duckdb import DuckDBStore
{workflow}
after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

async def main():
    workflow = the_workflow()
    store = DuckDBStore({path!r})
    engine = wfnb.Engine(store=store, namespace={{"noop": noop}})
    result = await (await engine.start(workflow))
    assert result.ok, result.error
    await engine.close()

asyncio.run(main())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"import": after_import, "peak": peak,
                  "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""

FLOOR = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"

#: (label, code) in order; each line's process runs the code of every line up to it
FLOOR_STEPS = (
    ("python", ""),
    ("+ import asyncio", "import asyncio"),
    ("+ import duckdb", "import duckdb"),
    (
        "+ a new DuckDB file",
        """
import os, tempfile
path = os.path.join(tempfile.mkdtemp(), "floor.duckdb")
made = duckdb.connect(":memory:")
made.execute(f"ATTACH '{{path}}' AS new (BLOCK_SIZE {block_size})")
made.close()
con = duckdb.connect(path)
for name, value in {settings!r}.items():
    con.execute(f"SET {{name}} = {{value}}")
""",
    ),
    (
        "+ the store's schema",
        """
for sql, params in {schema!r}:
    con.execute(sql, params)
""",
    ),
)

POINTS = """
marks = []
def mark(label):
    got = dict(line.split(":", 1) for line in open("/proc/self/status"))
    kb = {{k: int(got[k].split()[0]) for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM")}}
    marks.append((label, kb))
mark("python started")
import asyncio, json, sys, tempfile
from pathlib import Path
import wfnb
mark("import wfnb")
from wfnb.store.duckdb import DuckDBStore
{workflow}
mark("import the DuckDB store")

async def main(tmp):
    workflow = the_workflow()
    store = DuckDBStore(Path(tmp) / "mem.duckdb")
    await store.acquire()
    mark("store open")
    await store.release()
    engine = wfnb.Engine(store=store, namespace={{"noop": noop}})
    result = await (await engine.start(workflow))
    assert result.ok, result.error
    mark("run done")
    await store.flush()
    mark("journal folded")
    await engine.close()
    mark("closed")

with tempfile.TemporaryDirectory() as tmp:
    asyncio.run(main(tmp))
print(json.dumps(marks))
"""


#: what one `RUN` prints: peak RSS in KiB after the imports and at the end
Run = TypedDict("Run", {"import": int, "peak": int, "heavy": list[str]})


def measure(shape: str, steps: int, path: Path) -> Run:
    """One `RUN` in a fresh process, on the store file ``path``."""
    code = RUN.format(workflow=_workflow(shape, steps), heavy=HEAVY, path=str(path))
    got: Run = json.loads(_run(code))
    return got


def workloads(steps: int, repeat: int) -> Iterator[tuple[str, list[Run]]]:
    """Each shape ``repeat`` times on a new file; then the fan-out ``repeat`` times
    on a file earlier runs made (a kernel's second run: no schema to make, but
    the fold meets existing rows and indexes on disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        for shape in ("fan_out", "chain"):
            runs = [measure(shape, steps, Path(tmp) / f"{shape}{i}.duckdb") for i in range(repeat)]
            yield f"durable {shape.replace('_', '-')} {steps}", runs
        existing = Path(tmp) / "existing.duckdb"
        measure("fan_out", steps, existing)
        yield "  again, existing file", [measure("fan_out", steps, existing) for _ in range(repeat)]


def _workflow(shape: str, steps: int) -> str:
    """`WORKFLOW` for ``steps`` steps of the shape named ``shape`` (`shapes`), whose
    needs a fresh process gives (this one stays light: see `_run`)."""
    bench = str(Path(__file__).resolve().parent)
    needs = _run(
        f"import json, sys; sys.path.insert(0, {bench!r}); import shapes; "
        f"print(json.dumps(shapes.{shape}({steps}).needs))"
    )
    return WORKFLOW.format(needs=json.loads(needs))


def points(shape: str, steps: int) -> list[tuple[str, dict[str, int]]]:
    code = POINTS.format(workflow=_workflow(shape, steps))
    return [(label, kb) for label, kb in json.loads(_run(code))]


RECORD = """
import json
from wfnb.store.duckdb import _schema, _tuning

class Recorder:
    statements = []

    def execute(self, sql, params=None):
        self.statements.append((sql, params))
        return self

    def fetchone(self):
        return (0,)  # the schema version of a new file

_schema.migrate(Recorder())
print(json.dumps({"block_size": _tuning.BLOCK_SIZE, "settings": _tuning.SETTINGS,
                  "schema": Recorder.statements}))
"""


def _run(code: str) -> str:
    """Run ``code`` in a fresh Python; its last line of output. This process never
    imports wfnb or duckdb: ``ru_maxrss`` survives ``exec``, so a child would
    report this process's peak if it were higher than its own."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def floor_peaks() -> list[tuple[str, int]]:
    """Peak RSS (KiB) of each `FLOOR_STEPS` line, each in a fresh process; the
    store's statements are recorded in another one (`RECORD`)."""
    values = json.loads(_run(RECORD))
    values["schema"] = [tuple(statement) for statement in values["schema"]]
    peaks, code = [], ""
    for label, step in FLOOR_STEPS:
        code += step.format(**values) + "\n"
        peaks.append((label, int(_run(code + FLOOR))))
    return peaks


#: byte-compiles wfnb where it is installed, without importing it
COMPILE = """
import compileall, importlib.util
package = importlib.util.find_spec("wfnb").submodule_search_locations[0]
print(compileall.compile_dir(package, quiet=1))
"""


def compile_wfnb() -> None:
    """Write wfnb's bytecode before measuring, as installing a package does. A
    module whose ``.pyc`` is missing or stale is compiled at every import when
    Python may not write it (``PYTHONDONTWRITEBYTECODE``, set on the dev box), and
    compiling leaves its memory behind: 0.3–0.4 MB on the peak, measured."""
    if _run(COMPILE) != "True":
        raise SystemExit("could not byte-compile wfnb")


def _range(values: list[int]) -> str:
    low, high = min(values) / 1024, max(values) / 1024
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"


def main(steps: int, repeat: int) -> None:
    compile_wfnb()
    floors = floor_peaks()
    print(f"floor: python -c pass peaks at {floors[0][1] / 1024:.1f} MB (ru_maxrss, fresh process)")
    print(f"{'workload':<26}{'after import MB':>16}{'peak MB':>12}  heavy modules loaded")
    peaks: list[int] = []
    for label, runs in workloads(steps, repeat):
        if not label.startswith(" "):
            peaks += [got["peak"] for got in runs]
        heavy = sorted({m for got in runs for m in got["heavy"]}) or ["none"]
        print(
            f"{label:<26}{_range([got['import'] for got in runs]):>16}"
            f"{_range([got['peak'] for got in runs]):>12}  {', '.join(heavy)}"
        )
    print(f"\nthe floor without wfnb (peak MB, a fresh process each; runs x{repeat} above)")
    for label, floor in floors:
        print(f"{label:<42}{floor / 1024:>8.1f}")
    top = floors[-1][1]
    share = _range([peak - top for peak in peaks])
    print(f"{'wfnb: new-file runs above, less the floor':<42}{'+' + share:>12}")
    print(f"\nwhere it goes (durable fan-out {steps}; /proc/self/status, MB)")
    print(f"{'point':<26}{'VmRSS':>8}{'anon':>8}{'file':>8}{'peak so far':>13}")
    for label, kb in points("fan_out", steps):
        print(
            f"{label:<26}{kb['VmRSS'] / 1024:>8.1f}{kb['RssAnon'] / 1024:>8.1f}"
            f"{kb['RssFile'] / 1024:>8.1f}{kb['VmHWM'] / 1024:>13.1f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per workload")
    args = parser.parse_args()
    main(args.steps, args.repeat)
