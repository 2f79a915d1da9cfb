"""rayfit.data: loading, each cleaning step, task detection, the split, the fitted preprocessing, errors."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import messy_frame
from rayfit.config import DataConfig, SplitConfig
from rayfit.data import BUILTIN, Prepared, load_table, prepare
from rayfit.data.prepare import check
from rayfit.data.preprocessing import load_preprocessing, save_preprocessing
from rayfit.errors import UserError


def _csv(tmp_path, frame: pd.DataFrame, name: str = "data.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _prepare(tmp_path, frame: pd.DataFrame, target: str = "y", seed: int = 0, **settings) -> Prepared:
    return prepare(DataConfig(source=_csv(tmp_path, frame), target=target, **settings), seed)


def _base(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """Two informative numbers and a balanced binary text target."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(rows), rng.standard_normal(rows)
    return pd.DataFrame({"a": a, "b": b, "y": np.where(a + b > 0, "pos", "neg")})


# -- loading ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape, target", [
    ("synthetic", (1000, 21), "label"),
    ("breast_cancer", (569, 31), "target"),
    ("wine", (178, 14), "target"),
    ("iris", (150, 5), "target"),
    ("digits", (1797, 65), "target"),
    ("diabetes", (442, 11), "target"),
])
def test_builtin_sets_load_offline(name, shape, target):
    frame, default_target = load_table(name)
    assert name in BUILTIN
    assert frame.shape == shape and default_target == target and target in frame.columns


def test_csv_and_parquet_load(tmp_path):
    frame = _base(30)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "parts").mkdir()
    frame.iloc[:10].to_parquet(tmp_path / "parts" / "0.parquet")
    frame.iloc[10:].to_parquet(tmp_path / "parts" / "1.parquet")
    for source in ("t.csv", "t.parquet", "parts"):
        loaded, target = load_table(str(tmp_path / source))
        assert target is None and loaded.shape == (30, 3), source
        np.testing.assert_allclose(loaded["a"].to_numpy(), frame["a"].to_numpy())


# -- cleaning --------------------------------------------------------------------------------------

def test_exact_duplicates_kept_unless_asked_to_drop(tmp_path):
    frame = pd.concat([_base(100), _base(100).iloc[:7]], ignore_index=True)
    kept = _prepare(tmp_path, frame)  # auto: how often a row occurs is part of the table
    assert kept.n_rows == 107 and "kept 7 exact duplicate rows (data.drop_duplicates: true drops them)" in kept.log
    assert _prepare(tmp_path, frame, drop_duplicates=False).n_rows == 107
    dropped = _prepare(tmp_path, frame, drop_duplicates=True)
    assert dropped.n_rows == 100 and "dropped 7 exact duplicate rows" in dropped.log


def test_constant_column_dropped(tmp_path):
    frame = _base().assign(const="same", zero=0)
    prepared = _prepare(tmp_path, frame)
    assert prepared.raw_columns == ["a", "b"]
    assert "dropped constant column 'const'" in prepared.log and "dropped constant column 'zero'" in prepared.log


def test_id_like_columns_dropped_but_features_kept(tmp_path):
    rows = 200
    rng = np.random.default_rng(1)
    frame = _base(rows).assign(
        customer_id=rng.permutation(rows) * 7 + 3,  # unique ints, an ID name
        row_number=np.arange(5, rows + 5)[rng.permutation(rows)],  # unique ints, consecutive
        code=[f"C{i:05d}" for i in rng.permutation(rows)],  # unique text
        price=rng.standard_normal(rows),  # unique floats: a feature
        level=rng.integers(0, 5, rows),  # few distinct ints: a feature
        score=rng.permutation(rows) * 13,  # unique ints, neither named nor consecutive: a feature
    )
    prepared = _prepare(tmp_path, frame)
    assert {"customer_id", "row_number", "code"}.isdisjoint(prepared.raw_columns)
    assert {"price", "level", "score"} <= set(prepared.raw_columns)
    assert "dropped ID-like column 'customer_id' (unique integer per row)" in prepared.log
    assert any("'code'" in line and "unique text" in line for line in prepared.log)


def test_missing_values_imputed(tmp_path):
    frame = _base().assign(city=np.resize(["paris", "lyon", "nice"], 200))
    frame.loc[::10, "a"] = np.nan
    frame.loc[::7, "city"] = None
    prepared = _prepare(tmp_path, frame)
    for X in (prepared.X_train, prepared.X_val, prepared.X_test):
        assert X.dtype == np.float32 and not np.isnan(X).any()
    assert "imputed 20 missing values in 'a' with the median (fitted on train)" in prepared.log
    assert any(line.startswith("imputed 29 missing values in 'city'") for line in prepared.log)
    assert not any("'b'" in line and "imputed" in line for line in prepared.log)


def test_onehot_or_ordinal_by_cardinality_and_config(tmp_path):
    frame = _base(300).assign(city=np.resize(["paris", "lyon", "nice"], 300),
                              zip=[f"z{i % 40}" for i in range(300)])
    auto = _prepare(tmp_path, frame)
    assert {"city=lyon", "city=nice", "city=paris", "zip"} <= set(auto.feature_names)
    assert auto.n_features == 2 + 3 + 1
    assert "one-hot encoded 'city' (3 categories)" in auto.log
    assert any(line.startswith("ordinal encoded 'zip' (40 categories") for line in auto.log)
    assert _prepare(tmp_path, frame, categorical_encoding="onehot").n_features == 2 + 3 + 40
    ordinal = _prepare(tmp_path, frame, categorical_encoding="ordinal")
    assert ordinal.feature_names == ["a", "b", "city", "zip"]


def test_datetime_columns_expanded(tmp_path):
    frame = _base(100).assign(
        signup=pd.date_range("2024-01-01", periods=100, freq="D").strftime("%Y-%m-%d"),
        seen=pd.date_range("2023-03-01 08:30", periods=100, freq="7h").astype(str),
    )
    prepared = _prepare(tmp_path, frame)
    assert "expanded datetime column 'signup' into year, month, day, dayofweek" in prepared.log
    assert "expanded datetime column 'seen' into year, month, day, dayofweek, hour" in prepared.log
    assert {"signup_year", "signup_month", "signup_day", "signup_dayofweek", "seen_hour"} <= set(prepared.feature_names)
    assert "signup" in prepared.raw_columns  # the raw column is expanded inside the fitted preprocessor


def test_missing_target_rows_dropped(tmp_path):
    frame = _base(100)
    frame.loc[[3, 50, 70], "y"] = None
    prepared = _prepare(tmp_path, frame)
    assert prepared.n_rows == 97 and "dropped 3 rows with a missing target" in prepared.log


# -- task ------------------------------------------------------------------------------------------

def test_task_detection(tmp_path):
    frame = _base(200)
    text = _prepare(tmp_path, frame)
    assert text.task == "classification" and text.class_names == ["neg", "pos"] and text.n_classes == 2
    assert text.y_train.dtype == np.int64
    few = frame.assign(y=np.resize([1, 2, 3], 200))
    assert _prepare(tmp_path, few).class_names == ["1", "2", "3"]
    real = frame.assign(y=frame["a"] * 3 + 1)
    regression = _prepare(tmp_path, real)
    assert regression.task == "regression" and regression.n_classes is None and regression.class_names is None
    assert regression.y_train.dtype == np.float32 and regression.class_weights is None
    assert _prepare(tmp_path, few, task="regression").task == "regression"


def _chosen_by(tmp_path, frame: pd.DataFrame, metric: str, **settings) -> Prepared:
    source = check(DataConfig(source=_csv(tmp_path, frame), target="y", **settings))
    source.chosen_by = metric  # as the run's data stage sets it
    return source.prepare(0)


def test_class_weights_auto_follow_the_metric_that_chooses(tmp_path):
    frame = _base(300)
    imbalanced = frame.assign(y=np.where(np.arange(300) < 240, "common", "rare"))
    # chosen by accuracy (the default), log loss, precision or ROC AUC: weighting would trade it away
    for metric in ("accuracy", "log_loss", "precision", "roc_auc"):
        prepared = _chosen_by(tmp_path, imbalanced, metric)
        assert prepared.class_weights is None, metric
        assert any(line.startswith("class weights: none, though the largest class is 4.0x") and
                   f"chosen by {metric}" in line for line in prepared.log), prepared.log
    assert _prepare(tmp_path, imbalanced).class_weights is None  # the default metric: accuracy
    # chosen by a metric that counts every class alike: balanced weights
    for metric in ("balanced_accuracy", "recall", "f1"):
        prepared = _chosen_by(tmp_path, imbalanced, metric)
        weights = prepared.class_weights
        assert set(weights) == {0, 1} and weights[1] > 1 > weights[0], metric
        assert any(f"class_weight auto, as the model is chosen by {metric}" in line for line in prepared.log)
    balanced = frame.assign(y=np.resize(["x", "z"], 300))
    assert _chosen_by(tmp_path, balanced, "balanced_accuracy").class_weights is None  # within 1.5x
    assert _prepare(tmp_path, balanced).class_weights is None
    assert _chosen_by(tmp_path, imbalanced, "accuracy", class_weight="balanced").class_weights[1] > 1
    assert _prepare(tmp_path, balanced, class_weight="balanced").class_weights == pytest.approx({0: 1.0, 1: 1.0})
    assert _prepare(tmp_path, imbalanced, class_weight="none").class_weights is None


# -- split and preprocessing -----------------------------------------------------------------------

def test_stratified_split_sizes_and_determinism():
    prepared = prepare(DataConfig(), 0)
    assert (len(prepared.y_train), len(prepared.y_val), len(prepared.y_test)) == (700, 150, 150)
    assert prepared.n_features == 20 and prepared.n_rows == 1000
    share = [np.mean(y) for y in (prepared.y_train, prepared.y_val, prepared.y_test)]
    assert max(share) - min(share) < 0.01
    again, other = prepare(DataConfig(), 0), prepare(DataConfig(), 1)
    np.testing.assert_array_equal(prepared.X_test, again.X_test)
    assert not np.array_equal(prepared.X_test, other.X_test)


def test_a_test_file_of_its_own_is_the_test_part_and_nothing_else(tmp_path):
    """--test: every source row trains or validates (val: 15% of them), the test part is exactly the
    test file's rows with a target, in file order, transformed by the preprocessing fitted on train;
    its extra columns are left out and an unseen category encodes as none of the known ones."""
    train = _base(rows=200).assign(city=np.where(np.arange(200) % 2, "Paris", "Rome"))
    test = _base(rows=30, seed=9).assign(city="Oslo", note="not a feature")
    test.loc[[3, 7], "y"] = None
    cfg = DataConfig(source=_csv(tmp_path, train), target="y", test=_csv(tmp_path, test, "test.csv"))
    prepared = prepare(cfg, 0)
    assert (len(prepared.y_train), len(prepared.y_val), len(prepared.y_test)) == (170, 30, 28)
    assert prepared.split.rows == {"train": 170, "val": 30, "test": 28}
    kept = [i for i in range(30) if i not in (3, 7)]
    np.testing.assert_array_equal(prepared.test_rows, kept)
    expected = test.iloc[kept]
    np.testing.assert_array_equal(prepared.y_test, (expected["y"] == "pos").astype(int))
    np.testing.assert_allclose(prepared.X_test, prepared.preprocessor.transform(expected[["a", "b", "city"]]), rtol=1e-6)
    city = [i for i, name in enumerate(prepared.feature_names) if name.startswith("city")]
    assert city and not prepared.X_test[:, city].any()  # Oslo: neither Paris nor Rome
    # none of the test rows is in train or val, and every source row is
    seen = {tuple(row) for row in np.vstack([prepared.X_train, prepared.X_val])[:, :2].round(5)}
    assert len(seen) == 200 and not seen & {tuple(row) for row in prepared.X_test[:, :2].round(5)}
    log = " ".join(prepared.log)
    assert "left out 1 column(s) the models do not use: note" in log and "left out 2 row(s) with a missing target" in log
    assert "170/30 (train/val" in log and "(test: the test file)" in prepared.summary()


def test_synthetic_is_learnable_by_a_linear_model():
    from sklearn.linear_model import LogisticRegression

    prepared = prepare(DataConfig(), 0)
    model = LogisticRegression().fit(prepared.X_train, prepared.y_train)
    assert 0.85 <= model.score(prepared.X_val, prepared.y_val) <= 0.97


def test_scaler_fitted_on_train_only():
    prepared = prepare(DataConfig(source="diabetes"), 0)
    np.testing.assert_allclose(prepared.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(prepared.X_train.std(axis=0), 1, atol=1e-4)
    assert np.abs(prepared.X_test.mean(axis=0)).max() > 1e-3  # test rows did not shape the scaler


def test_quantile_scaling_maps_a_skewed_column_onto_a_normal_one_fitted_on_train(tmp_path):
    rng = np.random.default_rng(0)
    income = rng.lognormal(3.0, 1.2, 600)  # skewed, with a long right tail
    frame = pd.DataFrame({"income": income, "y": np.where(income > np.median(income), "high", "low")})
    standard = _prepare(tmp_path, frame, numeric_scaling="standard").X_train[:, 0]
    quantile = _prepare(tmp_path, frame, numeric_scaling="quantile")
    column = quantile.X_train[:, 0]

    def skew(x):
        return float(((x - x.mean()) ** 3).mean() / x.std() ** 3)

    assert skew(standard) > 2 and abs(skew(column)) < 0.1
    assert abs(float(np.median(column))) < 0.05 and 0.9 < float(column.std()) < 1.1
    assert any("by their quantiles" in line for line in quantile.log)
    # order kept: a monotone map of the column
    order = np.argsort(standard)
    assert np.all(np.diff(column[order]) >= -1e-6)


def test_auto_scaling_maps_only_the_skewed_columns_by_their_quantiles(tmp_path):
    rng = np.random.default_rng(1)
    income, height = rng.lognormal(3.0, 1.2, 600), rng.normal(170, 10, 600)
    frame = pd.DataFrame({"income": income, "height": height, "y": np.where(height > 170, "tall", "short")})
    standard = _prepare(tmp_path, frame, numeric_scaling="standard")
    auto = _prepare(tmp_path, frame)  # the default
    j = auto.feature_names.index("height")
    np.testing.assert_allclose(auto.X_train[:, j], standard.X_train[:, j], atol=1e-5)  # near-normal: standardized
    k = auto.feature_names.index("income")
    assert abs(float(pd.Series(auto.X_train[:, k]).skew())) < 0.1 < float(pd.Series(standard.X_train[:, k]).skew())
    assert any("standardized 1 numeric" in line for line in auto.log)
    assert any("mapped 1 numeric feature(s) onto a normal distribution" in line for line in auto.log)


def test_saved_preprocessing_transforms_raw_rows(tmp_path):
    frame = messy_frame(200)
    source = _csv(tmp_path, frame)
    prepared = prepare(DataConfig(source=source, target="label"), 0)
    save_preprocessing(prepared, tmp_path / "model")
    loaded = load_preprocessing(tmp_path / "model")
    assert loaded.raw_columns == prepared.raw_columns and loaded.feature_names == prepared.feature_names

    raw = pd.read_csv(source)
    everything = loaded.transform(raw.drop(columns=["label"]))  # rows to predict carry no target
    assert everything.dtype == np.float32 and everything.shape == (200, prepared.n_features)
    np.testing.assert_array_equal(everything, prepared.preprocessor.transform(raw[prepared.raw_columns]).astype(np.float32))
    # The same rows as prepare's test split, in the same order: find them by their own feature values.
    matches = [np.flatnonzero(np.all(np.isclose(everything, row, atol=1e-5), axis=1)) for row in prepared.X_test]
    assert all(len(m) >= 1 for m in matches)
    assert list(loaded.decode(np.array([1, 0]))) == ["yes", "no"]

    unseen = raw.iloc[:3].assign(city="marseille")
    out = loaded.transform(unseen)
    assert not np.isnan(out).any()
    city = [i for i, name in enumerate(loaded.feature_names) if name.startswith("city=")]
    assert (out[:, city] == 0).all()


# -- user errors -----------------------------------------------------------------------------------

def test_missing_target_column_lists_columns(tmp_path):
    with pytest.raises(UserError, match=r"target column 'price' not found in .*data.csv; columns: a, b, y"):
        _prepare(tmp_path, _base(), target="price")
    wide = pd.DataFrame(np.zeros((3, 40)), columns=[f"c{i}" for i in range(40)])
    with pytest.raises(UserError, match=r"columns: c0, c1, .*\.\.\. \(28 more\)"):
        _prepare(tmp_path, wide, target="price")


def test_file_without_target_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no target column"):
        prepare(DataConfig(source=_csv(tmp_path, _base())), 0)


def test_single_class_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"target 'y' has a single class \('a'\); classification needs at least 2"):
        _prepare(tmp_path, _base().assign(y="a"))


def test_regression_of_text_is_an_error(tmp_path):
    with pytest.raises(UserError, match="target 'y' is not numeric"):
        _prepare(tmp_path, _base(), task="regression")


@pytest.mark.parametrize("frame, settings, message", [
    (_base(12), {}, r"for a 70/15/15 split: 12 rows after cleaning \(need at least 20\)"),
    (_base(100).assign(y=["rare"] * 2 + ["common"] * 98), {}, r"smallest class has 2 row"),
    (_base(40).assign(y=np.resize(list("abcdefgh"), 40)), {}, r"test split 6 rows \(need at least 8 for 8 classes\)"),
    (_base(30), {"split": SplitConfig(train=0.96, val=0.02, test=0.02)}, r"val split 1 rows|test split 1 rows"),
    (_base(30).assign(y=np.arange(30.0) * 1.5), {"split": SplitConfig(train=0.97, val=0.01, test=0.02)},
     r"val split 0 rows"),
])
def test_too_few_rows_is_an_error(tmp_path, frame, settings, message):
    with pytest.raises(UserError, match=rf"too few rows.*{message}"):
        _prepare(tmp_path, frame, **settings)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"data file not found: .*missing\.csv"):
        load_table(str(tmp_path / "missing.csv"))


def test_unsupported_extension_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(UserError, match=r"notes\.txt.*\.csv, \.parquet.*synthetic"):
        load_table(str(tmp_path / "notes.txt"))


def test_empty_or_unreadable_file_is_an_error(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b,y\n")
    (tmp_path / "broken.parquet").write_text("not parquet")
    for name, reason in (("empty.csv", "empty"), ("header.csv", "no rows"), ("broken.parquet", "could not read")):
        with pytest.raises(UserError, match=rf"{reason}.*{name}|{name}.*{reason}") as caught:
            load_table(str(tmp_path / name))
        assert "\n" not in str(caught.value)


def _products(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Prices set by the maker, whose name is one word inside a free-text product name; an SKU per row."""
    rng = np.random.default_rng(seed)
    price = {"acme": 10.0, "globex": 20.0, "initech": 30.0, "umbrella": 40.0, "hooli": 50.0}
    makers = rng.choice(list(price), rows)
    names = [f"{maker.title()} {rng.choice(['widget', 'gadget', 'gizmo', 'sprocket'])} {rng.integers(100, 999)} "
             f"{rng.choice(['pro', 'mini', 'max'])}" for maker in makers]
    return pd.DataFrame({"sku": [f"SKU{i:05d}" for i in range(rows)], "product": names,
                         "weight": rng.normal(size=rows).round(3),
                         "price": [price[m] + rng.normal() for m in makers]})


def test_a_free_text_column_is_used_as_words_not_codes(tmp_path):
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    _products().to_csv(tmp_path / "products.csv", index=False)
    prepared = prepare(DataConfig(source=str(tmp_path / "products.csv"), target="price"), 0)
    assert "dropped ID-like column 'sku' (unique text per row)" in prepared.log  # an ID is still dropped
    assert any(line.startswith("text column 'product': TF-IDF of") for line in prepared.log)
    assert "product:words__acme" in prepared.feature_names
    # The maker's name inside the text is the price: a linear model on the features finds it.
    model = Ridge(alpha=1.0).fit(prepared.X_train, prepared.y_train)
    assert r2_score(prepared.y_test, model.predict(prepared.X_test)) > 0.9
    # New rows, a missing name among them, through the saved preprocessing (as predict does).
    rows = _products(5, seed=1).drop(columns=["price"])
    rows.loc[0, "product"] = None
    assert prepared.preprocessor.transform(rows).shape == (5, len(prepared.feature_names))


def test_one_word_codes_stay_categories_however_many():
    from rayfit.data.clean import column_kinds

    frame = pd.DataFrame({"code": [f"c{i % 40}" for i in range(200)], "y": range(200)})
    assert column_kinds(frame, "y")["categorical"] == ["code"]


def test_a_text_column_is_one_feature_to_permutation_importance(tmp_path):
    from sklearn.linear_model import Ridge

    from rayfit.evaluation.fitted import SklearnModel
    from rayfit.evaluation.importance import permutation_importance

    _products().to_csv(tmp_path / "products.csv", index=False)
    prepared = prepare(DataConfig(source=str(tmp_path / "products.csv"), target="price"), 0)
    model = SklearnModel("ridge", "regression", Ridge().fit(prepared.X_train, prepared.y_train))
    ranked = permutation_importance(model, prepared.X_test, prepared.y_test, prepared.feature_names, "rmse", None,
                                    repeats=2)
    assert [name for name, _, _ in ranked] == ["product", "weight"]  # the maker's name sets the price
    assert ranked[0][1] > 5 * max(ranked[1][1], 1e-9)


def test_importance_is_the_same_in_the_driver_and_in_ray_tasks(ray_session):
    """A small test split is scored in the driver, a large one in Ray tasks: the same figures."""
    from sklearn.linear_model import LogisticRegression

    from rayfit.evaluation.fitted import SklearnModel
    from rayfit.evaluation.importance import importance_here, importance_in_process, importance_on_ray

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4)).astype(np.float32)
    y = (X[:, 0] - 0.5 * X[:, 2] > 0).astype(np.int64)
    models = {"linear": SklearnModel("linear", "classification", LogisticRegression().fit(X, y), 2)}
    args = (X, y, ["a", "b", "c", "d"], "accuracy", 2, 3, 0)
    assert importance_in_process(X) and not importance_in_process(np.zeros((100_000, 100)))
    here, on_ray = importance_here(models, *args), importance_on_ray(models, *args)
    assert here == on_ray and [name for name, _, _ in here["linear"]][:2] == ["a", "c"]
