"""Reading a workflow's YAML, against libyaml composing the same text in the same run.

    python benchmarks/bench_parse.py                    # 200 and 10,000 steps
    python benchmarks/bench_parse.py --steps 200 50000  # other sizes

"parse + plan" is `Workflow.from_yaml`: compose (libyaml's C parser), duplicate-key
and alias-bomb checks, building the data, validation, template compilation and the
plan. The floor is ``yaml.compose(text, Loader=yaml.CSafeLoader)``, libyaml alone
producing the node tree with line numbers that every error message needs. Both
are CPU time (`time.process_time`), the minimum of several repetitions: the
machine is shared, and the minimum is the run the neighbours disturbed least.
Shapes: the fan-out and the chain of `shapes.py`, written as a `%%workflow` cell.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import shapes
import yaml

import wfnb


def cell_text(shape: shapes.Shape) -> str:
    lines = ["steps:"]
    for sid, needs in shape.needs.items():
        lines += [f"  {sid}:", "    code: noop"]
        if needs:
            lines.append(f"    needs: [{', '.join(needs)}]")
    return "\n".join(lines) + "\n"


def best_of(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return min(times)


def main(sizes: list[int], repeat: int) -> None:
    print("floor: yaml.compose(text, Loader=yaml.CSafeLoader) on the same text, same run")
    print(f"CPU time, best of {repeat}")
    print(f"{'shape':<18}{'parse+plan ms':>15}{'libyaml ms':>12}{'ratio':>8}")
    for size in sizes:
        for shape in (shapes.fan_out(size), shapes.chain(size)):
            text = cell_text(shape)
            floor = best_of(repeat, lambda t=text: yaml.compose(t, Loader=yaml.CSafeLoader))
            parse = best_of(repeat, lambda t=text: wfnb.Workflow.from_yaml(t, name="bench"))
            print(
                f"{shape.label:<18}{parse * 1e3:>15.1f}{floor * 1e3:>12.1f}{parse / floor:>7.2f}x"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[shapes.STEPS, 10_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    main(args.steps, args.repeat)
