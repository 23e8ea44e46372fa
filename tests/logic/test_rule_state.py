"""RuleState.matches is to_dict() == data without building the dict (the runner's check after every run)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bms.logic.runner import RuleState

states = st.builds(
    RuleState,
    kind=st.sampled_from(["", "pid", "totalizer"]),
    block=st.dictionaries(st.sampled_from(["integral", "last_time", "output"]), st.floats(-5, 5), max_size=2),
    out=st.lists(st.none() | st.floats(0, 100) | st.booleans(), max_size=2),
    number=st.integers(0, 3),
    quality=st.sampled_from(["good", "uncertain", "bad"]),
    reason=st.sampled_from(["", "x: is bad"]),
)


@given(states, states)
def test_matches_answers_what_comparing_the_dicts_answers(state, other):
    for data in (state.to_dict(), other.to_dict(), None, {**state.to_dict(), "extra": 1}):
        assert state.matches(data) == (state.to_dict() == data), (state, data)


@given(states)
def test_a_default_written_as_a_key_is_a_difference(state):
    data = state.to_dict()
    for key, default in (("k", ""), ("n", 0), ("why", ""), ("block", {})):
        if key not in data:
            assert not state.matches({**data, key: default})
