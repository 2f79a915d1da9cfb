"""Permutation importance at a bounded cost: a seeded sample of the test rows, and one prediction
per feature whatever the number of shuffles."""
from __future__ import annotations

import numpy as np

from rayfit.evaluation.importance import permutation_importance, sample_rows


class _Counting:
    """A regression model that reads feature 0 only and counts the predictions asked of it."""

    task = "regression"

    def __init__(self):
        self.calls = []

    def outputs(self, X):
        self.calls.append(len(X))
        return 3.0 * X[:, 0]


def test_every_shuffle_of_a_feature_is_scored_in_one_prediction():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = 3.0 * X[:, 0]
    model = _Counting()
    ranked = permutation_importance(model, X, y, ["a", "b", "c", "d"], "rmse", None, repeats=5, seed=1)
    assert model.calls == [200] + [5 * 200] * 4  # the baseline, then one stacked call per feature
    assert ranked[0][0] == "a" and ranked[0][1] > 1.0
    assert all(mean == 0.0 and std == 0.0 for _, mean, std in ranked[1:])  # unread features cost nothing
    again = permutation_importance(_Counting(), X, y, ["a", "b", "c", "d"], "rmse", None, repeats=5, seed=1)
    assert again == ranked  # seeded


def test_the_test_rows_are_sampled_when_there_are_more_than_asked():
    assert list(sample_rows(10, 2000, 0)) == list(range(10))
    sample = sample_rows(50_000, 2000, 0)
    assert len(sample) == 2000 == len(set(sample)) and list(sample) == sorted(sample)
    assert np.array_equal(sample, sample_rows(50_000, 2000, 0))
