"""rayfit.data for images and sequences: each source, the splits, the scaling, saved preprocessing, errors."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rayfit.evaluation.manifest import write_manifest
from rayfit.config import DataConfig
from rayfit.data import prepare
from rayfit.data.preprocessing import load_preprocessing, save_preprocessing
from rayfit.errors import UserError


def _npz(tmp_path, name: str = "data.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _waves(n: int = 120, steps: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, steps, 3) sequences whose class is their level: easy, balanced, three classes."""
    rng = np.random.default_rng(seed)
    y = np.resize(np.arange(3), n)
    return rng.normal(y[:, None, None] * 2.0, 1.0, (n, steps, 3)), y


def _series(rows: int = 200) -> pd.DataFrame:
    """A time series whose target is the row number: a target's value says which row it came from."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({"load": np.arange(rows, dtype=float), "temp": rng.normal(20, 5, rows)})


def _csv(tmp_path, frame: pd.DataFrame, name: str = "series.csv") -> str:
    frame.to_csv(tmp_path / name, index=False)
    return str(tmp_path / name)


# -- digits as images ------------------------------------------------------------------------------

def test_digits_as_images_scaled_on_train_only():
    prepared = prepare(DataConfig(source="digits", kind="image"), 0)
    assert prepared.kind == "image" and prepared.input_shape == (8, 8, 1)
    assert prepared.X_train.dtype == np.float32 and prepared.X_train.ndim == 4
    assert (len(prepared.y_train), len(prepared.y_val), len(prepared.y_test)) == (1257, 270, 270)
    assert prepared.class_names == [str(i) for i in range(10)] and prepared.y_train.dtype == np.int64
    assert prepared.feature_names == ["intensity"] and prepared.raw_columns == []
    assert prepared.X_train.mean() == pytest.approx(0, abs=1e-5)
    assert prepared.X_train.std() == pytest.approx(1, abs=1e-4)
    assert abs(prepared.X_test.mean()) > 1e-4  # test images did not shape the scaling
    assert "loaded 1797 8x8 grayscale images (10 classes) from digits" in prepared.log
    assert "standardized 1 image channel(s) (mean and std fitted on train)" in prepared.log


def test_digits_stays_a_table_without_kind_image():
    prepared = prepare(DataConfig(source="digits"), 0)
    assert prepared.kind == "tabular" and prepared.X_train.ndim == 2


# -- the built-in sequences ------------------------------------------------------------------------

def test_sequences_builtin_shape_balance_and_determinism():
    prepared = prepare(DataConfig(source="sequences"), 0)
    assert prepared.kind == "sequence" and prepared.input_shape == (30, 2) and prepared.n_rows == 1200
    assert prepared.class_names == ["sawtooth", "sine", "square"] and prepared.feature_names == ["f0", "f1"]
    counts = np.bincount(np.concatenate([prepared.y_train, prepared.y_val, prepared.y_test]))
    assert counts.tolist() == [400, 400, 400]
    again = prepare(DataConfig(source="sequences"), 0)
    np.testing.assert_array_equal(prepared.X_test, again.X_test)
    np.testing.assert_allclose(prepared.X_train.reshape(-1, 2).mean(axis=0), 0, atol=1e-5)


def test_sequences_builtin_is_learnable():
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier

    prepared = prepare(DataConfig(source="sequences"), 0)
    flat = [X.reshape(len(X), -1) for X in (prepared.X_train, prepared.X_val)]
    # Random phase and frequency: a linear model on raw steps sees noise, a forest sees the shape.
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(flat[0], prepared.y_train)
    assert forest.score(flat[1], prepared.y_val) > 0.6
    constant = DummyClassifier().fit(flat[0], prepared.y_train)
    assert constant.score(flat[1], prepared.y_val) < 0.4


# -- .npz files ------------------------------------------------------------------------------------

def test_npz_images_and_sequences(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (60, 6, 5, 3)).astype(np.uint8)
    labels = np.resize(["cat", "dog"], 60)
    prepared = prepare(DataConfig(source=_npz(tmp_path, x=images, y=labels)), 0)
    assert prepared.kind == "image" and prepared.input_shape == (6, 5, 3)
    assert prepared.feature_names == ["c0", "c1", "c2"] and prepared.class_names == ["cat", "dog"]

    x, y = _waves()
    prepared = prepare(DataConfig(source=_npz(tmp_path, "seq.npz", x=x, y=y)), 0)
    assert prepared.kind == "sequence" and prepared.input_shape == (12, 3) and prepared.target == "y"
    assert prepared.feature_names == ["f0", "f1", "f2"] and prepared.class_names == ["0", "1", "2"]
    assert (len(prepared.y_train), len(prepared.y_val), len(prepared.y_test)) == (84, 18, 18)

    grey = prepare(DataConfig(source=_npz(tmp_path, "grey.npz", x=x[..., 0].reshape(120, 3, 4), y=y), kind="image"), 0)
    assert grey.kind == "image" and grey.input_shape == (3, 4, 1)


def test_npz_with_a_2d_x_is_a_table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 4))
    prepared = prepare(DataConfig(source=_npz(tmp_path, x=x, y=(x[:, 0] > 0).astype(int))), 0)
    assert prepared.kind == "tabular" and prepared.raw_columns == ["f0", "f1", "f2", "f3"]
    assert prepared.target == "y" and prepared.input_shape == (4,)


def test_saved_preprocessing_round_trip_for_arrays(tmp_path):
    x, y = _waves()
    source = _npz(tmp_path, x=x, y=y)
    prepared = prepare(DataConfig(source=source), 3)
    save_preprocessing(prepared, tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "preprocessing.json").read_text())
    assert meta["kind"] == "sequence" and meta["input_shape"] == [12, 3]
    loaded = load_preprocessing(tmp_path / "model")
    everything = loaded.transform(x)
    assert everything.dtype == np.float32 and everything.shape == x.shape
    # prepare's test split is some of these rows: find each by its own values.
    for example in prepared.X_test:
        assert np.isclose(everything, example, atol=1e-6).all(axis=(1, 2)).any()
    assert list(loaded.decode(np.array([2, 0]))) == ["2", "0"]
    with pytest.raises(UserError, match=r"expected examples of shape \(12, 3\), got \(12, 2\)"):
        loaded.transform(x[..., :2])
    with pytest.raises(UserError, match="not a table"):
        loaded.transform(pd.DataFrame({"a": [1]}))


def test_predict_an_npz_with_an_array_run(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from rayfit.evaluation.fitted import SklearnModel
    from rayfit.predict import predict_file

    x, y = _waves()
    prepared = prepare(DataConfig(source=_npz(tmp_path, x=x, y=y)), 0)
    estimator = LogisticRegression().fit(prepared.X_train.reshape(len(prepared.X_train), -1), prepared.y_train)
    SklearnModel("linear", "classification", estimator, 3).save(tmp_path / "run" / "model")
    save_preprocessing(prepared, tmp_path / "run" / "model")
    write_manifest(tmp_path / "run" / "model")  # last, as a run writes its model directory
    out = predict_file(str(tmp_path / "run"), _npz(tmp_path, "new.npz", x=x[:10]))  # no labels needed
    assert list(out.columns) == ["prediction", "proba_0", "proba_1", "proba_2"] and len(out) == 10
    assert (out["prediction"].astype(str) == pd.Series(y[:10]).astype(str)).mean() >= 0.8
    with pytest.raises(UserError, match="give an .npz file"):
        predict_file(str(tmp_path / "run"), _csv(tmp_path, pd.DataFrame({"a": [1.0]})))


# -- image folders ---------------------------------------------------------------------------------

def _image_folder(tmp_path, mode: str = "L") -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label, level in (("dark", 40), ("light", 200)):
        (root / label).mkdir(parents=True)
        for i in range(15):
            size = (10, 8) if i % 2 else (12, 9)  # (width, height): sizes differ, the first is 12x9
            pixels = np.clip(rng.normal(level, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels, "RGB").convert(mode)
            image.save(root / label / f"{i}.png")
    (root / "dark" / "notes.txt").write_text("not an image")
    return str(root)


def test_image_folder_grayscale_resized(tmp_path):
    prepared = prepare(DataConfig(source=_image_folder(tmp_path), image_size=(6, 7)), 0)
    assert prepared.kind == "image" and prepared.input_shape == (6, 7, 1) and prepared.n_rows == 30
    assert prepared.class_names == ["dark", "light"] and prepared.target == "class"
    assert any(line.endswith("resized to 6x7") and "(2 classes)" in line for line in prepared.log)
    # Brightness tells the classes apart, after standardizing too.
    brightness = prepared.X_train.mean(axis=(1, 2, 3))
    assert brightness[prepared.y_train == 0].max() < brightness[prepared.y_train == 1].min()


def test_image_folder_rgb_takes_the_first_size(tmp_path):
    prepared = prepare(DataConfig(source=_image_folder(tmp_path, mode="RGB")), 0)
    assert prepared.input_shape == (9, 12, 3) and prepared.feature_names == ["c0", "c1", "c2"]


# -- time-series tables ----------------------------------------------------------------------------

def test_time_series_windows_split_chronologically(tmp_path):
    frame = _series(200)
    prepared = prepare(DataConfig(source=_csv(tmp_path, frame), target="load", kind="sequence", window=24), 0)
    assert prepared.kind == "sequence" and prepared.task == "regression"
    assert prepared.input_shape == (24, 2) and prepared.feature_names == ["load", "temp"]
    assert prepared.raw_columns == ["load", "temp"]
    # Rows 0-139 / 140-169 / 170-199: each part holds rows - window + 1 - horizon windows.
    assert (len(prepared.y_train), len(prepared.y_val), len(prepared.y_test)) == (116, 6, 6)
    assert prepared.y_train.max() < prepared.y_val.min() and prepared.y_val.max() < prepared.y_test.min()
    assert prepared.y_train.max() <= 139 and prepared.y_val.max() <= 169  # no target from a later part
    assert "built 128 windows of 24 rows x 2 columns predicting 'load' 1 row ahead" in prepared.log
    assert any(line.startswith("split chronologically 70/15/15") for line in prepared.log)


def test_time_series_targets_lie_horizon_rows_after_the_window(tmp_path):
    frame = _series(200)
    cfg = DataConfig(source=_csv(tmp_path, frame), target="load", kind="sequence", window=5, horizon=3)
    prepared = prepare(cfg, 0)
    series = prepared.preprocessor
    last_rows = prepared.X_train[:, -1, 0] * series.scale_[0] + series.mean_[0]  # the window's last 'load'
    np.testing.assert_allclose(prepared.y_train, last_rows + 3, atol=1e-3)
    np.testing.assert_allclose(prepared.y_train[:3], [7, 8, 9])  # rows 0-4 predict row 7
    assert len(prepared.y_train) == 140 - 5 - 3 + 1


def test_time_series_saved_preprocessing_gives_a_window_per_last_row(tmp_path):
    frame = _series(200)
    source = _csv(tmp_path, frame)
    prepared = prepare(DataConfig(source=source, target="load", kind="sequence", window=24), 0)
    save_preprocessing(prepared, tmp_path / "model")
    loaded = load_preprocessing(tmp_path / "model")
    windows = loaded.transform(pd.read_csv(source).iloc[170:])  # the test rows
    assert windows.shape == (30 - 24 + 1, 24, 2)
    np.testing.assert_array_equal(windows[:-1], prepared.X_test)  # the last window's target lies beyond the file


def test_predict_a_time_series_gives_the_last_row_of_each_window(tmp_path):
    from sklearn.linear_model import LinearRegression

    from rayfit.evaluation.fitted import SklearnModel
    from rayfit.predict import predict_file

    source = _csv(tmp_path, _series(200))
    prepared = prepare(DataConfig(source=source, target="load", kind="sequence", window=24), 0)
    estimator = LinearRegression().fit(prepared.X_train.reshape(len(prepared.X_train), -1), prepared.y_train)
    SklearnModel("linear", "regression", estimator).save(tmp_path / "run" / "model")
    save_preprocessing(prepared, tmp_path / "run" / "model")
    write_manifest(tmp_path / "run" / "model")  # last, as a run writes its model directory
    out = predict_file(str(tmp_path / "run"), _csv(tmp_path, _series(200).iloc[:50], "recent.csv"))
    assert list(out.columns) == ["last_row", "prediction"] and out["last_row"].tolist() == list(range(23, 50))
    np.testing.assert_allclose(out["prediction"], out["last_row"] + 1, atol=0.5)


# -- user errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((30, 4, 4))}, r"needs arrays 'x' and 'y'; missing 'y' \(found: x\)"),
    ({"images": np.zeros((30, 4, 4)), "labels": np.zeros(30)}, r"missing 'x', 'y' \(found: images, labels\)"),
    ({"x": np.zeros((30, 4, 4)), "y": np.zeros(29)}, r"'x' has 30 examples, 'y' has shape \(29,\)"),
    ({"x": np.array(["a"] * 30).reshape(30, 1, 1), "y": np.zeros(30)}, r"'x' must be a numeric array"),
])
def test_bad_npz_is_an_error(tmp_path, arrays, message):
    with pytest.raises(UserError, match=rf"data\.npz.*{message}"):
        prepare(DataConfig(source=_npz(tmp_path, **arrays)), 0)


@pytest.mark.parametrize("source, kind", [
    ("series.csv", "image"), ("cube.npz", "tabular"), ("cube.npz", "sequence"), ("flat.npz", "image"),
    ("sequences", "image"), ("iris", "image"), ("digits", "sequence"), ("images", "tabular"),
])
def test_kind_that_does_not_fit_the_source_is_an_error(tmp_path, source, kind):
    _csv(tmp_path, _series(50))
    _npz(tmp_path, "cube.npz", x=np.zeros((30, 4, 4, 1)), y=np.zeros(30))
    _npz(tmp_path, "flat.npz", x=np.zeros((30, 4)), y=np.zeros(30))
    (tmp_path / "images" / "a").mkdir(parents=True)
    path = source if source in ("sequences", "iris", "digits") else str(tmp_path / source)
    with pytest.raises(UserError, match=rf"data\.kind: {kind} does not fit .*{source}"):
        prepare(DataConfig(source=path, kind=kind), 0)


def test_time_series_errors(tmp_path):
    source = _csv(tmp_path, _series(200).assign(city="paris", day="mon"))
    with pytest.raises(UserError, match=r"data\.window: required for a time-series CSV \(kind: sequence\)"):
        prepare(DataConfig(source=source, target="load", kind="sequence"), 0)
    with pytest.raises(UserError, match=r"needs numeric columns only; not numeric: 'city', 'day'"):
        prepare(DataConfig(source=source, target="load", kind="sequence", window=4), 0)
    short = _csv(tmp_path, _series(60), "short.csv")
    with pytest.raises(UserError, match=r"too few rows for a 70/15/15 chronological split: the val split has 9 rows"):
        prepare(DataConfig(source=short, target="load", kind="sequence", window=12), 0)


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: no images found"):
        prepare(DataConfig(source=str(tmp_path / "empty")), 0)
    (tmp_path / "empty" / "a").mkdir()
    (tmp_path / "empty" / "a" / "broken.png").write_text("not a png")
    with pytest.raises(UserError, match=r"could not read image .*broken\.png"):
        prepare(DataConfig(source=str(tmp_path / "empty")), 0)


def test_too_few_examples_and_single_class_are_errors(tmp_path):
    x, y = _waves(12)
    with pytest.raises(UserError, match=r"too few rows for a 70/15/15 split: 12 rows after cleaning"):
        prepare(DataConfig(source=_npz(tmp_path, x=x, y=y)), 0)
    x, _ = _waves(60)
    with pytest.raises(UserError, match=r"target 'y' has a single class \('a'\)"):
        prepare(DataConfig(source=_npz(tmp_path, x=x, y=np.array(["a"] * 60))), 0)
    with pytest.raises(UserError, match=r"smallest class has 2 row"):
        prepare(DataConfig(source=_npz(tmp_path, x=x, y=np.array(["a"] * 58 + ["b"] * 2))), 0)
