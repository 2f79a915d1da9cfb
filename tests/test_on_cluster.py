"""data.prepare_on: cluster: Ray Data cleans, splits, fits and transforms the table block by block,
and the driver holds only samples. What it computes over the whole training split must equal what
pandas computes over the same rows held at once."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rayfit.cli import main
from rayfit.config import DataConfig, Experiment, validate
from rayfit.data import check
from rayfit.data.on_cluster import cleaned
from rayfit.data.split import HashSplit
from rayfit.errors import UserError

ROWS = 3000
SEED = 7


def _table(rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(5.0, 2.0, rows), "b": rng.exponential(3.0, rows),
                          "c": rng.integers(0, 100, rows).astype(float),
                          "city": rng.choice(["north", "south", "east"], rows)})
    frame.loc[rng.random(rows) < 0.1, "a"] = np.nan  # imputed, then counted at the median in the scaling
    frame.loc[rng.random(rows) < 0.01, "b"] = np.inf  # treated as missing
    frame["label"] = np.where(frame["c"] + 20 * (frame["city"] == "north") > 55, "high", "low")
    frame.loc[rng.choice(rows, 4, replace=False), "label"] = "rare"  # 4 rows: no sample needs to hold one
    frame.loc[rng.random(rows) < 0.02, "label"] = None  # rows without a target are dropped
    return frame


def _write(frame: pd.DataFrame, path, files: int = 1, row_group: int = 250):
    """One file of many row groups, or a directory of several: Ray Data reads them as different blocks."""
    if files == 1:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)
        return path
    path.mkdir()
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), files)):
        pq.write_table(pa.Table.from_pandas(frame.iloc[rows], preserve_index=False), path / f"part-{i}.parquet",
                       row_group_size=row_group)
    return path


def _prepare(source, tmp_path, name: str, driver_rows: int = 400):
    from rayfit.cluster.storage import Location

    cfg = DataConfig(source=str(source), target="label", prepare_on="cluster", driver_rows=driver_rows)
    source = check(cfg)
    assert source.where == "cluster"
    return source.prepare(SEED, shards=Location.of(tmp_path / name))


def test_the_whole_training_split_is_what_pandas_computes_over_the_same_rows(ray_session, tmp_path):
    frame = _table()
    prepared = _prepare(_write(frame, tmp_path / "table.parquet"), tmp_path, "train")

    # The same split, computed here over the whole table at once.
    rows = cleaned(frame, "label").reset_index(drop=True)
    u = HashSplit(SEED, (0.7, 0.85, 1.0), (0.7, 0.85, 1.0)).positions(rows)
    train = rows.loc[u < 0.7]
    assert prepared.where == "cluster" and prepared.split.method == "row hash"
    assert prepared.train_shards.rstrip("/").endswith("/train")
    assert prepared.split.rows == {"train": len(train), "val": int(((u >= 0.7) & (u < 0.85)).sum()),
                                   "test": int((u >= 0.85).sum())}
    assert prepared.n_rows == len(rows) < ROWS

    # Classes over the whole split: the rare one too, though the driver's sample may lack it.
    assert prepared.class_names == ["high", "low", "rare"]

    # Scaling over every training row, with missing values counted at the imputed median.
    columns = prepared.preprocessor.named_steps["columns"].named_transformers_["numeric"]
    medians, scale = columns.named_steps["impute"].statistics_, columns.named_steps["scale"]
    for j, column in enumerate(["a", "b", "c"]):
        values = train[column].replace([np.inf, -np.inf], np.nan).fillna(medians[j])
        assert scale.mean_[j] == pytest.approx(values.mean(), rel=1e-9)
        assert scale.scale_[j] == pytest.approx(values.std(ddof=0), rel=1e-9)

    # The training split as written for the workers: every training row, through that pipeline.
    written = pq.read_table(tmp_path / "train").to_pandas()
    x = np.stack(written["x"].to_numpy())
    expected = np.asarray(prepared.preprocessor.transform(train[prepared.raw_columns]), dtype=np.float32)
    assert x.shape == expected.shape
    order = lambda rows: np.lexsort(rows.T[::-1])  # noqa: E731 (the rows sorted, wherever a block put them)
    np.testing.assert_allclose(x[order(x)], expected[order(expected)], rtol=1e-6)
    codes = pd.Index(prepared.class_names).get_indexer(train["label"])
    assert sorted(written["y"]) == sorted(codes)

    # The driver's samples: bounded, disjoint, and drawn from their own splits.
    for y in (prepared.y_train, prepared.y_val, prepared.y_test):
        assert 0 < len(y) < 600
    assert len(prepared.X_train) < len(train)


def test_the_split_does_not_depend_on_how_the_table_is_cut_into_blocks(ray_session, tmp_path):
    frame = _table(1200)
    one = _prepare(_write(frame, tmp_path / "one.parquet", row_group=1200), tmp_path, "one")
    many = _prepare(_write(frame, tmp_path / "many", files=3, row_group=100), tmp_path, "many")
    assert one.split.rows == many.split.rows
    np.testing.assert_array_equal(one.y_test, many.y_test)
    np.testing.assert_allclose(one.X_test, many.X_test, rtol=1e-6)


def test_settings_it_cannot_honour_are_errors_before_anything_runs(tmp_path):
    from rayfit.data.on_cluster import prepares_on_cluster

    source = _write(_table(100), tmp_path / "t.parquet")
    with pytest.raises(UserError, match="cannot be combined with data.streaming: false"):
        prepares_on_cluster(DataConfig(source=str(source), prepare_on="cluster", streaming=False))
    with pytest.raises(UserError, match="data.drop_duplicates"):
        prepares_on_cluster(DataConfig(source=str(source), prepare_on="cluster", drop_duplicates=True))
    with pytest.raises(UserError, match="numeric_scaling: quantile"):
        prepares_on_cluster(DataConfig(source=str(source), prepare_on="cluster", numeric_scaling="quantile"))
    with pytest.raises(UserError, match="takes a CSV or Parquet file"):
        prepares_on_cluster(DataConfig(source="iris", prepare_on="cluster"))
    assert prepares_on_cluster(DataConfig(source=str(source), prepare_on="cluster"))
    # a saved config (resume's config.yaml, rayfit.run given an Experiment) sets every key: still fine
    saved = Experiment(data=DataConfig(source=str(source), prepare_on="cluster")).model_dump(mode="json")
    assert prepares_on_cluster(validate(saved).data)
    assert not prepares_on_cluster(DataConfig(source=str(source)))  # auto: a small file stays on the driver
    with pytest.raises(UserError, match="target column 'nope' not found"):
        check(DataConfig(source=str(source), target="nope", prepare_on="cluster"))
    with pytest.raises(UserError, match="regression needs numbers"):
        check(DataConfig(source=str(source), target="city", task="regression", prepare_on="cluster"))


def test_a_bad_target_is_an_error_before_ray_starts_or_a_run_is_claimed(tmp_path, capsys):
    source = _write(_table(100), tmp_path / "t.parquet")
    code = main(["run", "--data", str(source), "--target", "nope", "--out", str(tmp_path / "run"),
                 "--set", "data.prepare_on=cluster", "--set", "ray.address=127.0.0.1:1"])  # no Ray is asked for
    assert code == 2 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: target column 'nope' not found")


def test_a_run_prepared_on_the_cluster_trains_on_every_row_and_predicts_raw_rows(ray_session, tmp_path, capsys):
    frame = _table()
    source = _write(frame, tmp_path / "table.parquet")
    out = tmp_path / "run"
    code = main(["run", "--data", str(source), "--target", "label", "--out", str(out),
                 "--set", "data.prepare_on=cluster", "--set", "data.driver_rows=300",
                 "--set", "baselines.models=[dummy,linear]", "--set", "keras.enabled=false",
                 "--set", "tune.enabled=false", "--set", "torch.epochs=2", "--set", "torch.workers=2",
                 "--set", "torch.launch=ray_train", "--set", "torch.batch_size=64"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    train_rows = int(round(len(cleaned(frame, "label")) * 0.7))
    # each of the 2 workers streamed its shard of the whole training split, not the driver's sample
    history = json.loads((out / "run_state.json").read_text())["stages"]["torch_mlp"]["history"]
    rank0 = history[-1]["train_rows"]
    assert 0.3 * train_rows < rank0 < 0.7 * train_rows and rank0 > 300
    assert metrics["selection"] == {"method": "validation"}  # cv auto goes by the split's true size
    log = (out / "run.log").read_text()
    assert "data: pass 3/3" in log
    assert "the baselines train on the train sample" in (out / "report.md").read_text()

    raw = frame.drop(columns=["label"]).head(25)
    raw.to_csv(tmp_path / "raw.csv", index=False)
    assert main(["predict", str(out), "--data", str(tmp_path / "raw.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    predictions = pd.read_csv(tmp_path / "p.csv")
    assert len(predictions) == 25 and set(predictions["prediction"]) <= {"high", "low", "rare"}
