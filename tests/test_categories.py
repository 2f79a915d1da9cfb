"""A baseline that takes categorical columns natively (evaluation/categories.py): the category codes
it recovers from the run's one preprocessing are the categories, and it keeps the contract of
every baseline (clone, weight, early-stop, save and load) while fitted on them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from rayfit.evaluation.manifest import write_manifest
from rayfit.config import DataConfig
from rayfit.data.features import fit_preprocessor
from rayfit.evaluation.baselines import BASELINES, fit_baseline, fit_estimator
from rayfit.evaluation.categories import NativeCategories, categorical_layout
from rayfit.evaluation.fitted import SklearnModel, load_model
from rayfit.evaluation.importance import native_importance

NATIVE = [name for name, baseline in BASELINES.items() if baseline.categories]


def _table(rows: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """A numeric column of noise, a 4-level column one-hot encoded, and a 40-level column (more than
    max_onehot_categories: ordinal encoded) whose level decides the class."""
    rng = np.random.default_rng(seed)
    city = rng.integers(0, 40, rows)
    frame = pd.DataFrame({"noise": rng.normal(size=rows),
                          "kind": rng.choice(["flat", "house", "condo", "farm"], rows),
                          "city": [f"city{c:02d}" for c in city]})
    return frame, (city % 3 == 0).astype(int)


def _prepared(frame: pd.DataFrame):
    kinds = {"numeric": ["noise"], "categorical": ["kind", "city"], "datetime": [], "text": []}
    return fit_preprocessor(frame, np.arange(len(frame)), kinds, DataConfig(), [])


def test_the_codes_are_the_categories_each_column_had_and_an_unseen_one_is_minus_one():
    frame, _ = _table()
    preprocessor = _prepared(frame)
    layout = categorical_layout(preprocessor)
    assert layout is not None and len(layout.onehot) == 1 and len(layout.ordinal) == 1
    fresh = pd.concat([frame.head(50), pd.DataFrame({"noise": [0.0], "kind": ["castle"], "city": ["city00"]})])
    X = np.asarray(preprocessor.transform(fresh), dtype=np.float32)
    assert X.shape[1] == layout.width == 1 + 4 + 1
    encoded = NativeCategories(None, layout).encode(X)
    kind_codes, city_codes = encoded["category_0"].to_numpy(), encoded["category_1"].to_numpy()
    onehot = preprocessor.named_steps["columns"].named_transformers_["onehot"].named_steps["encode"]
    assert list(np.asarray(onehot.categories_[0])[kind_codes[:50]]) == list(fresh["kind"][:50])
    assert kind_codes[50] == -1  # "castle": no training row had it
    ordinal = preprocessor.named_steps["columns"].named_transformers_["ordinal"].named_steps["encode"]
    assert list(np.asarray(ordinal.categories_[0])[city_codes]) == list(fresh["city"])
    assert np.allclose(encoded["feature_0"], X[:, 0])  # the numeric feature as it was


def test_a_table_without_categorical_columns_has_no_layout_and_the_model_is_not_wrapped():
    from rayfit.evaluation.baselines import make_estimator

    frame = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    kinds = {"numeric": ["a", "b"], "categorical": [], "datetime": [], "text": []}
    assert categorical_layout(fit_preprocessor(frame, np.arange(20), kinds, DataConfig(), [])) is None
    for name in NATIVE:
        if BASELINES[name].installed:
            assert not isinstance(make_estimator(name, "classification", None, 0, layout=None), NativeCategories)


@pytest.mark.parametrize("name", NATIVE)
def test_a_native_categories_model_keeps_the_contract_of_every_baseline(name, tmp_path):
    """What the baselines stage, the folds and the refit do to it (fit with an inner early stop,
    clone, weight and refit; save and load) on the categories, not on their encoded features."""
    if not BASELINES[name].installed:
        pytest.skip(f"{BASELINES[name].package} is not installed")
    frame, y = _table()
    preprocessor = _prepared(frame.iloc[:400])
    layout = categorical_layout(preprocessor)
    X = np.asarray(preprocessor.transform(frame), dtype=np.float32)
    weights = {0: 1.0, 1: 2.0}
    estimator, _ = fit_baseline(name, "classification", weights, 0, X[:400], y[:400], layout=layout)
    assert isinstance(estimator, NativeCategories)
    assert list(estimator.estimator.get_cat_feature_indices()) == [1, 2]  # after the one numeric feature
    model = SklearnModel(name, "classification", estimator, 2)
    accuracy = float((model.predict(X[400:]) == y[400:]).mean())
    assert accuracy > 0.9, accuracy  # the class is the city's: learnable only from the category

    model.save(tmp_path / name)
    write_manifest(tmp_path / name)  # as a run keeps it
    assert np.array_equal(load_model(tmp_path / name).outputs(X[400:]), model.outputs(X[400:]))
    kind, shares = native_importance(model, ["noise", "kind=condo", "kind=farm", "kind=flat", "kind=house", "city"])
    assert kind and shares[0][0] == "city", shares

    copy = clone(estimator)
    assert isinstance(copy, NativeCategories) and copy.layout == layout
    refitted = fit_estimator(name, copy, X, y, weights, inner_stop=True)
    assert np.all(np.isfinite(SklearnModel(name, "classification", refitted, 2).outputs(X[400:])))
