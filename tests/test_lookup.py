"""Configured names looked up in tables: one error line naming the name and every choice."""

import pytest

from hrpose.datasets.metadata import get_keypoint_info
from hrpose.postprocess.assignment import get_assignment_solver, munkres_assignment
from hrpose.postprocess.progressive_grouping import get_grouping_function
from hrpose.utils.lookup import lookup


def test_lookup_returns_the_value_or_lists_the_sorted_choices():
    assert lookup({"b": 2, "a": 1}, "a", "unknown letter {!r}") == 1
    with pytest.raises(ValueError) as raised:
        lookup({"b": 2, "a": 1}, "c", "unknown letter {!r}")
    assert str(raised.value) == "unknown letter 'c'; expected one of 'a', 'b'"
    with pytest.raises(LookupError, match="^unknown letter 'c'; expected one of 'a', 'b'$"):
        lookup({"b": 2, "a": 1}, "c", "unknown letter {!r}", LookupError)


def test_the_named_tables_say_what_was_unknown_and_the_choices():
    assert get_assignment_solver("munkres") is munkres_assignment
    with pytest.raises(ValueError, match="^unknown assignment solver 'hungarian'; expected one "
                                         "of 'munkres', 'scipy'$"):
        get_assignment_solver("hungarian")
    with pytest.raises(ValueError, match="^unknown grouping 'greedy'; expected one of 'fixed', "
                                         "'progressive'$"):
        get_grouping_function("greedy")
    assert get_keypoint_info("mpii").name == "mpii"
    with pytest.raises(KeyError, match="no keypoint metadata for dataset 'posetrack'; expected "
                                       "one of 'coco', 'crowdpose', 'mpii', 'ochuman', "
                                       "'synthetic'"):
        get_keypoint_info("posetrack")
