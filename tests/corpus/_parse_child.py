"""Parses corpus cases in a process of its own, under an address-space and a CPU
limit, and prints one JSON line per case: what was raised, and the peak memory
the parse allocated (tracemalloc). A case that crashes the interpreter (libyaml
overflowing the C stack) or runs away ends this process, not the test run.

    python _parse_child.py AS_BYTES CPU_SECONDS NAME...
"""

from __future__ import annotations

import json
import resource
import sys
import tracemalloc

from generated import GENERATED, case_path


def main(as_bytes: int, cpu_seconds: int, names: list[str]) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    import wfnb
    from wfnb.parse import parse_workflow

    for name in names:
        text: str | bytes = GENERATED[name]() if name in GENERATED else case_path(name).read_bytes()
        print(json.dumps({"case": name, "started": True}), flush=True)
        tracemalloc.start()
        outcome: dict[str, object] = {"case": name}
        try:
            workflow = parse_workflow(text, name="case")
            outcome.update(ok=True, steps=len(workflow.steps))
        except wfnb.DefinitionError as exc:
            outcome.update(
                error=type(exc).__name__,
                message=str(exc),
                line=exc.line,
                step=exc.step_id,
                definition_error=True,
            )
        except BaseException as exc:  # what the corpus exists to catch
            outcome.update(error=type(exc).__name__, message=str(exc)[:500])
        outcome["peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
