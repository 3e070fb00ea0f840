"""The batch-key router's decision, on its own."""

from collections import Counter

import pytest

pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install -e ".[ray]"')

from limner.scaleout.router import rank_replicas


def test_a_replica_rendering_the_key_is_preferred() -> None:
    loads = {"a": 3, "b": 0, "c": 1}
    assert rank_replicas(loads, Counter({"a": 2}), imbalance=8)[0] == ["a"]
    assert sorted(rank_replicas(loads, Counter({"a": 2}), imbalance=8)[1]) == ["b", "c"]


def test_unless_it_is_much_busier_than_the_least_loaded() -> None:
    loads = {"a": 12, "b": 1}
    ranked = rank_replicas(loads, Counter({"a": 1}), imbalance=8)
    assert ranked == [["b", "a"]]  # the default: the less loaded of two


def test_the_least_loaded_holder_of_the_key_wins() -> None:
    loads = {"a": 5, "b": 2, "c": 0}
    assert rank_replicas(loads, Counter({"a": 1, "b": 1}), imbalance=8)[0] == ["b"]


def test_without_a_holder_it_is_power_of_two() -> None:
    loads = {"a": 4, "b": 1, "c": 2, "d": 9}
    for _ in range(50):
        [choice] = rank_replicas(loads, Counter(), imbalance=8)
        assert len(choice) == 2 and loads[choice[0]] <= loads[choice[1]]
    assert rank_replicas({}, Counter(), imbalance=8) == []
    # A holder that is not available (not among the loads) is ignored.
    assert len(rank_replicas({"b": 0}, Counter({"a": 3}), imbalance=8)[0]) == 1
