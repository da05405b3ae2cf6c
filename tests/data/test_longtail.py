import numpy as np
import pytest

from dnet_tune import shot_groups as owner
from dnet_tune.data.longtail import (
    ShortClassError,
    carve,
    class_indices,
    lt_counts,
    shot_groups,
    shuffled_class_indices,
)
from dnet_tune.errors import UserError


def test_cifar10_if100_profile_is_the_published_list():
    assert lt_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize(
    ("n_max", "classes", "imbalance", "total"),
    [
        (5000, 10, 10, 20431), (5000, 10, 50, 13996), (5000, 10, 100, 12406),
        (500, 100, 10, 19573), (500, 100, 50, 12608), (500, 100, 100, 10847),
        (4975, 10, 100, 12341), (475, 100, 100, 10302),
    ],
)
def test_published_totals(n_max, classes, imbalance, total):
    counts = lt_counts(n_max, classes, imbalance)
    assert sum(counts) == total
    assert counts[0] == n_max
    assert counts == sorted(counts, reverse=True)


def test_last_class_is_exactly_n_max_over_imbalance():
    # float error must not floor e.g. 49.999999 to 49
    for n_max, classes, imb in [(5000, 10, 100), (500, 100, 100), (500, 100, 50), (1000, 7, 10)]:
        assert lt_counts(n_max, classes, imb)[-1] == n_max // imb


def test_degenerate_profiles():
    assert lt_counts(7, 1, 10) == [7]
    assert lt_counts(9, 4, 1) == [9, 9, 9, 9]
    with pytest.raises(ValueError):
        lt_counts(10, 3, 0.5)


def test_shot_group_boundaries():
    groups = shot_groups([101, 100, 20, 19, 0, 500])
    assert groups == {"many": [0, 5], "medium": [1, 2], "few": [3, 4]}


def test_shot_groups_follow_the_one_definition_not_a_copy(monkeypatch):
    groups = shot_groups([5, 500])
    assert tuple(groups) == owner.SHOT_GROUPS and groups["medium"] == []  # every group, in order
    monkeypatch.setattr(owner, "MANY_ABOVE", 50)
    monkeypatch.setattr(owner, "FEW_BELOW", 5)
    assert shot_groups([51, 50, 5, 4]) == {"many": [0], "medium": [1, 2], "few": [3]}


def test_class_indices_keep_file_order():
    labels = np.array([2, 0, 1, 0, 2, 2, 1])
    idx = class_indices(labels, 4)
    assert [i.tolist() for i in idx] == [[1, 3], [2, 6], [0, 4, 5], []]


def test_shuffled_class_indices_are_fixed_permutations():
    labels = np.repeat(np.arange(3), 10)
    a = shuffled_class_indices(labels, 3, seed=0)
    b = shuffled_class_indices(labels, 3, seed=0)
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert all(sorted(x.tolist()) == list(range(10 * c, 10 * c + 10)) for c, x in enumerate(a))


def test_carve_takes_meta_from_the_end_and_val_just_before():
    per_class = [np.arange(0, 10), np.arange(100, 110)]
    train, meta, val = carve(per_class, [5, 2], meta_per_class=2, val_per_class=3)
    assert train.tolist() == [0, 1, 2, 3, 4, 100, 101]
    assert meta.tolist() == [8, 9, 108, 109]
    assert val.tolist() == [5, 6, 7, 105, 106, 107]


def test_carve_short_class_and_empty_class_errors():
    with pytest.raises(ShortClassError) as info:
        carve([np.arange(10), np.arange(10, 14)], [5, 3], 1, 1)
    err = info.value
    assert (err.cls, err.have, err.train, err.meta, err.val) == (1, 4, 3, 1, 1)
    assert isinstance(err, UserError)
    with pytest.raises(UserError, match="0 training images"):
        carve([np.arange(10)], [0], 0, 0)
