"""The batch-key router's decision, on its own."""

import pytest

pytest.importorskip("ray.serve", reason='Ray Serve is not installed: pip install -e ".[ray]"')

from limner.scaleout.router import rank_replicas


def test_the_replica_the_key_went_to_is_preferred() -> None:
    loads = {"a": 3, "b": 0, "c": 1}
    ranked = rank_replicas(loads, "a", imbalance=8)
    assert ranked[0] == ["a"] and sorted(ranked[1]) == ["b", "c"]


def test_unless_it_is_much_busier_than_the_least_loaded() -> None:
    assert rank_replicas({"a": 12, "b": 1}, "a", imbalance=8) == [["b", "a"]]


def test_without_a_holder_it_is_the_less_loaded_of_two() -> None:
    loads = {"a": 4, "b": 1, "c": 2, "d": 9}
    for _ in range(50):
        [choice] = rank_replicas(loads, None, imbalance=8)
        assert len(choice) == 2 and loads[choice[0]] <= loads[choice[1]]
    assert rank_replicas({}, None, imbalance=8) == []
    # A holder that is no longer available (not among the loads) is passed over.
    assert len(rank_replicas({"b": 0}, "a", imbalance=8)[0]) == 1
