"""Review: the rule that templates read only upstream steps, inside loops too."""

import wfnb

from .conftest import error_of, wf


def test_loop_and_body_steps_may_only_read_steps_they_need_too():
    # A body step reading a top-level step its loop does not need: a race.
    err = error_of(
        "steps:\n  a: {code: f}\n  L: {loop: {for_each: '[1]', body: [b]}}\n"
        "  b: {code: g, with: {x: '{{ steps.a.output }}'}}\n"
    )
    assert err.step_id == "b" and "'a'" in str(err) and "add it to `needs`" in str(err)
    # A body step reading a sibling of its iteration it does not need: a race.
    err = error_of(
        "steps:\n  L: {loop: {for_each: '[1]', body: [b, c]}}\n"
        "  b: {code: g, with: {x: '{{ steps.c.output }}'}}\n  c: {code: f}\n"
    )
    assert err.step_id == "b" and "'c'" in str(err)
    # A loop's for_each reading a step it does not need: a race.
    err = error_of(
        "steps:\n  a: {code: f}\n  L: {loop: {for_each: '{{ steps.a.output }}', body: [b]}}\n"
        "  b: {code: g}\n"
    )
    assert err.step_id == "L" and "'a'" in str(err)
    err = error_of(  # the same, written as a bare expression
        "steps:\n  a: {code: f}\n  L: {loop: {for_each: 'steps.a.output', body: [b]}}\n"
        "  b: {code: g}\n"
    )
    assert err.step_id == "L" and "'a'" in str(err)
    err = error_of("steps:\n  L: {loop: {while: 'steps.zz.output', body: [b]}}\n  b: {code: g}\n")
    assert isinstance(err, wfnb.UnknownStepError) and err.step_id == "L"
    # What the loop needs, its body may read; a while may read its own body.
    wf(
        "steps:\n  a: {code: f}\n  L: {loop: {while: 'steps.b.output', body: [b, c]}, needs: [a]}\n"
        "  b: {code: g, with: {x: '{{ steps.a.output }}'}}\n"
        "  c: {code: g, needs: [b], with: {x: '{{ steps.b.output }}'}}\n"
    )
