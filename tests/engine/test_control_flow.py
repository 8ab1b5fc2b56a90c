import wfnb
from wfnb.model import StepStatus as S

from ..conftest import arun, wf


def run(namespace, backend, *texts):
    engine = wfnb.Engine(namespace=namespace, backend=backend)

    async def main():
        workflows = [
            wf(text, name=f"w{i}") if isinstance(text, str) else text
            for i, text in enumerate(texts)
        ]
        for workflow in workflows[:-1]:
            engine.register(workflow)
        handle = await engine.start(workflows[-1])
        result = await handle.wait()
        return engine, handle, result, await engine.store.get_steps(run_id=handle.id)

    return arun(main())


def test_conditional_skips_the_branch_not_taken_and_what_only_depends_on_it(rec, backend):
    _, handle, result, _ = run(
        rec.namespace(),
        backend,
        """
inputs: {n: 5}
steps:
  check: {conditional: {if: "inputs.n > 3", then: [big], else: [small]}}
  big: {code: work, with: {name: big}}
  small: {code: work, with: {name: small}}
  after_small: {code: work, needs: [small], with: {name: after_small}}
  join: {code: work, needs: [big, small], with: {name: join}}
""",
    )
    assert result.outputs["check"] == {"branch": "then", "steps": ["big"]}
    statuses = handle.step_statuses
    assert statuses["small"] is S.SKIPPED and statuses["after_small"] is S.SKIPPED
    assert statuses["join"] is S.COMPLETED
    assert set(rec.calls) == {"big", "join"}
    assert "small" not in result.outputs


def test_step_if_skips_unless_true(rec, backend):
    _, handle, result, _ = run(
        rec.namespace(),
        backend,
        "inputs: {go: false}\nsteps:\n  a: {code: work, if: 'inputs.go'}\n  b: {code: work, if: '{{ not inputs.go }}', with: {name: b}}\n",
    )
    assert handle.step_statuses["a"] is S.SKIPPED and result.outputs == {"b": "b"}


def test_for_each_loop_runs_its_body_per_item_with_loop_item_and_index(backend):
    def double(x, i):
        return (x * 2, i)

    _, _, result, steps = run(
        {"double": double},
        backend,
        """
inputs: {items: [1, 2, 3]}
steps:
  each: {loop: {for_each: "inputs['items']", body: [dbl]}}
  dbl: {code: double, with: {x: "{{ loop.item }}", i: "{{ loop.index }}"}}
  after: {code: double, needs: [dbl], with: {x: "{{ steps.dbl.output[0] }}", i: 0}}
""",
    )
    assert result.outputs["each"] == {
        "iterations": 3,
        "outputs": [{"dbl": (2, 0)}, {"dbl": (4, 1)}, {"dbl": (6, 2)}],
    }
    assert result.outputs["after"] == (12, 0)  # after the loop, the body step is its last iteration
    assert [s.step_id for s in steps if s.step_id.startswith("dbl")] == [
        "dbl[0]",
        "dbl[1]",
        "dbl[2]",
    ]


def test_loop_body_steps_never_run_on_their_own(rec, backend):
    run(
        rec.namespace(),
        backend,
        "steps:\n  l: {loop: {for_each: '[]', body: [b]}}\n  b: {code: work, with: {name: b}}\n",
    )
    assert rec.calls == []


def test_while_loop_sees_previous_outputs_and_stops(backend):
    pages = {0: {"next": 1}, 1: {"next": 2}, 2: {"next": None}}

    def fetch(page):
        return pages[page]

    _, _, result, _ = run(
        {"fetch": fetch},
        backend,
        """
steps:
  paginate:
    loop: {while: "loop.index == 0 or steps.page.output.next", body: [page]}
  page: {code: fetch, with: {page: "{{ loop.index }}"}}
""",
    )
    assert result.outputs["paginate"]["iterations"] == 3


def test_while_loop_past_max_iterations_fails_clearly(backend):
    _, _, result, _ = run(
        {"f": lambda: 1},
        backend,
        "steps:\n  w: {loop: {while: 'true', body: [b], max_iterations: 4}}\n  b: {code: f}\n",
    )
    assert result.status is wfnb.RunStatus.FAILED
    assert "exceeded max_iterations (4)" in result.error


def test_a_failing_body_step_fails_the_loop_step(rec, backend):
    _, handle, result, _ = run(
        rec.namespace(),
        backend,
        """
steps:
  l: {loop: {for_each: "[1, 2]", body: [b]}}
  b: {code: work, with: {name: "b{{ loop.item }}", fail: "{{ loop.item == 2 }}"}}
""",
    )
    assert handle.step_statuses["l"] is S.FAILED
    assert "iteration 1" in result.error and "b2 broke" in result.error


def test_sub_workflow_runs_as_a_linked_child_run(backend):
    child = "inputs: {x: 1}\nsteps:\n  d: {code: double, with: {x: '{{ inputs.x }}'}}\n"
    parent = "steps:\n  sub: {workflow: w0, with: {x: 21}}\n  use: {code: double, needs: [sub], with: {x: '{{ steps.sub.output.d }}'}}\n"
    engine, handle, result, _ = run({"double": lambda x: x * 2}, backend, child, parent)
    assert result.outputs == {"sub": {"d": 42}, "use": 84}
    children = arun(engine.store.list_runs(parent_run_id=handle.id))
    assert [(c.workflow, c.depth, c.parent_step_id, c.status) for c in children] == [
        ("w0", 1, "sub", wfnb.RunStatus.COMPLETED)
    ]


def test_sub_workflow_depth_is_capped_at_five():
    recursive = wf("steps:\n  again: {workflow: rec}\n", name="rec")
    engine, handle, result, _ = run(
        {}, None, recursive
    )  # no step code: the local backend says it all
    assert result.status is wfnb.RunStatus.FAILED and "depth" in result.error
    depths = sorted(r.depth for r in arun(engine.store.list_runs()))
    assert depths == [0, 1, 2, 3, 4, 5]


def test_unknown_sub_workflow_is_a_definition_error():
    engine = wfnb.Engine()
    try:
        arun(engine.start(wf("steps:\n  s: {workflow: nowhere}\n")))
    except wfnb.DefinitionError as exc:
        assert exc.step_id == "s" and "nowhere" in str(exc)
    else:
        raise AssertionError("expected a DefinitionError")
