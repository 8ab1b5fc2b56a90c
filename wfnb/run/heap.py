"""Large runs and Python's cyclic garbage collector.

A full collection walks every tracked object of the process, and it comes when the
objects that survived younger collections grow by a quarter. A run of thousands of
steps is such a growth by itself (its steps' slots, tasks and records), so it paid
for several walks over everything else the process holds too: the workflow's
models, the plan, the modules, a notebook's data. That is what made a step of a
10,000-step run cost 1.5-2 times one of a 200-step run.

While a large run is in flight, what the process held when it started is frozen
(`gc.freeze`: moved out of the collector's sight, still freed by reference
counting); the collections during the run walk only what came since. When the last
large run ends it is unfrozen (`gc.unfreeze`), so nothing is kept for good. Both are
constant-time. Small runs never touch the collector. A program that freezes the
heap itself (before forking workers, say) should not run large workflows meanwhile:
the end of one unfreezes its objects too. A large run paused for a person is
still in flight, so the heap stays frozen through the pause: garbage cycles made
before it started wait for its end (docs/python-api.md tells users).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: the steps (of the workflow, loop bodies counted once) from which a run freezes
LARGE_RUN = 1000

_in_flight = 0
_lock = threading.Lock()  # engines may run on loops in several threads


@contextmanager
def frozen_for(steps: int) -> Iterator[None]:
    """Freeze the heap as it stands while a run of ``steps`` steps is in flight, if
    that is large; unfreeze it when the last such run ends."""
    global _in_flight
    if steps < LARGE_RUN:
        yield
        return
    with _lock:
        gc.freeze()
        _in_flight += 1
    try:
        yield
    finally:
        with _lock:
            _in_flight -= 1
            if not _in_flight:
                gc.unfreeze()
