"""Preparation on the cluster: a table larger than the driver should hold is cleaned, split,
fitted and transformed by Ray Data, block by block, and the driver only ever holds bounded samples.

Three passes over the source, each streamed through Ray Data (read tasks on any node, a few blocks
in memory at a time):

1. samples: each row's split comes from a seeded hash of its values (the same row always lands in
   the same split, whatever the blocks), and rows whose hash falls in each split's first slice make
   a uniform sample of about `data.driver_rows` rows per split. From the training sample come the
   column kinds, the columns dropped as constant or ID-like, the imputed medians, the categories
   and the text vocabularies: the same scikit-learn pipeline a driver-prepared run fits.
2. statistics over the whole training split: each block's row counts, its numeric columns' shifted
   sums and sums of squares, and its class counts, added up on the driver. They give the exact
   scaling of every numeric column, the exact classes and class weights, and each split's size.
3. the transform: every training row through the fitted pipeline, written as Parquet (a tensor
   column `x`, the target `y`) by the write tasks, where the Ray Train workers stream their shards.

The samples are what the driver keeps: the baselines train on the training sample, and every model
is judged on the validation and test samples. The networks (and boosters trained as Ray Train worker
groups) train on every training row.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from rayfit.config import DataConfig
from rayfit.data import clean
from rayfit.data.features import class_weights_of_counts, drop_uninformative_columns, fit_preprocessor
from rayfit.data.load import CSV_SUFFIXES, PARQUET_SUFFIXES
from rayfit.data.prepared import SPLITS, Part, Prepared, Say, Source, Split
from rayfit.data.split import HashSplit, split_label
from rayfit.data.target import class_name, detect_task, regression_values, resolve_target, shorten
from rayfit.errors import UserError

PEEK_ROWS = 10_000  # the first rows, read before Ray starts: columns, target and task are checked on them
# prepare_on: auto prepares on the cluster when the source on disk is larger than this share of the
# memory available to the driver: pandas holds a table in several times its Parquet size.
AUTO_MEMORY_FRACTION = 1 / 8


def source_bytes(source: str) -> int:
    path = Path(source)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


def prepares_on_cluster(cfg: DataConfig) -> bool:
    """Whether this source is prepared on the cluster (data.prepare_on), checked against the rest of
    the data settings."""
    suffix = Path(cfg.source).suffix.lower()
    path = Path(cfg.source)
    table_file = suffix in CSV_SUFFIXES + PARQUET_SUFFIXES or (
        path.is_dir() and any(p.suffix in PARQUET_SUFFIXES for p in path.iterdir()))
    if cfg.prepare_on == "driver":
        return False
    if cfg.prepare_on == "auto":
        if not (table_file and path.exists()) or cfg.task == "clustering" or cfg.kind not in ("auto", "tabular") \
                or cfg.streaming is False or cfg.window is not None or _asks_for_deduplication(cfg) \
                or cfg.numeric_scaling == "quantile":
            return False
        import psutil

        return source_bytes(cfg.source) > AUTO_MEMORY_FRACTION * psutil.virtual_memory().available
    # prepare_on: cluster, as the user asked: every setting it cannot honour is said now
    if not table_file:
        raise UserError(f"data.prepare_on: cluster takes a CSV or Parquet file; {cfg.source} is not one")
    if cfg.task == "clustering":
        raise UserError("data.prepare_on: cluster prepares supervised tables; task: clustering is prepared on the driver")
    if cfg.kind not in ("auto", "tabular") or cfg.window is not None:
        raise UserError("data.prepare_on: cluster prepares tables of independent rows, not sequences or images")
    if cfg.streaming is False:
        raise UserError("data.prepare_on: cluster streams the training split to the workers; "
                        "it cannot be combined with data.streaming: false")
    if cfg.numeric_scaling == "quantile":
        raise UserError(f"data.numeric_scaling: {cfg.numeric_scaling} fits each column's quantiles on the driver; "
                        "with data.prepare_on: cluster numbers are standardized (numeric_scaling: standard)")
    if _asks_for_deduplication(cfg):
        raise UserError("data.drop_duplicates: finding duplicates needs the whole table on the driver; with "
                        "data.prepare_on: cluster identical rows instead share a split (set drop_duplicates: false)")
    return True


def _asks_for_deduplication(cfg: DataConfig) -> bool:
    """drop_duplicates: true (auto keeps them on the cluster, where identical rows share a split).
    Said by the value, not by whether the key was set: a saved config (resume, rayfit.run given an
    Experiment) sets every key."""
    return cfg.drop_duplicates is True


def _read_error(source: str, exc: Exception) -> UserError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UserError(f"could not read data file {source}: {reason}")


def _head(source: str) -> tuple[list[str], pd.DataFrame]:
    """The column names and the first PEEK_ROWS rows, reading only the first row group (or CSV
    blocks) they lie in: a dataset scanner's read-ahead would hold a gigabyte of a large file."""
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    if Path(source).suffix.lower() in CSV_SUFFIXES:
        import pyarrow.csv as pacsv

        reader, batches, rows = pacsv.open_csv(source), [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows >= PEEK_ROWS:
                break
        table = pa.Table.from_batches(batches, schema=reader.schema)
        return list(reader.schema.names), table.slice(0, PEEK_ROWS).to_pandas()
    dataset = pads.dataset(source, format="parquet")  # the file list and schema only
    first = pq.ParquetFile(dataset.files[0])
    batch = next(first.iter_batches(batch_size=PEEK_ROWS), None)
    head = batch.to_pandas() if batch is not None else dataset.schema.empty_table().to_pandas()
    return list(dataset.schema.names), head


class ClusterTable(Source):
    """A table prepared on the cluster. Checked on its first rows, read without Ray (the target must
    be there, and the task is detected on them); prepared by the three passes once Ray runs."""

    where = "cluster"

    def __init__(self, cfg: DataConfig, target: str, task: str, log: list[str]):
        self.cfg, self.target, self.task, self.log = cfg, target, task, log
        self.source_bytes = source_bytes(cfg.source)

    @classmethod
    def check(cls, cfg: DataConfig) -> "ClusterTable":
        if not Path(cfg.source).exists():
            raise UserError(f"data file not found: {cfg.source}")
        try:
            names, head = _head(cfg.source)
        except Exception as exc:  # pyarrow's errors: ArrowInvalid, OSError and others
            raise _read_error(cfg.source, exc) from None
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise UserError(f"data file {cfg.source} has duplicate column names: {', '.join(map(repr, repeated))}")
        if len(head) == 0:
            raise UserError(f"data file has no rows: {cfg.source}")
        head.columns = [str(c) for c in head.columns]
        target = resolve_target(head, cfg, None)
        log = [f"prepared on the cluster by Ray Data (data.prepare_on: {cfg.prepare_on}; the source is "
               f"{source_bytes(cfg.source) / 2**20:,.0f} MiB): the driver holds samples, never the table"]
        task = detect_task(head[target].dropna(), cfg.task, log)
        log[-1] += f" (on the first {len(head):,} rows)"
        if task == "regression":
            regression_values(head[target].dropna())  # a target of words: said now, not by a failed block
        return cls(cfg, target, task, log)

    def moved(self, source: str) -> None:
        self.cfg = self.cfg.model_copy(update={"source": source})

    def describe(self) -> str:
        return f"{self.task}, {self.source_bytes / 2**20:,.0f} MiB: prepared on the cluster once Ray starts"

    def prepare(self, seed: int, shards=None, say: Say = lambda line: None) -> Prepared:
        """Samples on the driver, the whole training split transformed and written at `shards` (a
        Location) for the workers to stream."""
        if shards is None:
            raise ValueError("a table prepared on the cluster needs a location for its training split's shards")
        with _blocks_failing_as_errors(self.cfg.source):
            return _prepare_on_cluster(self, seed, shards, say)


# --- what runs on the cluster, block by block -------------------------------------------------

def cleaned(block: pd.DataFrame, target: str) -> pd.DataFrame:
    """A block as the driver-side cleaning leaves it: infinities missing, no row without a target."""
    block = clean.infinities_as_missing(block, [])
    return block.loc[block[target].notna()]


def _samples(block: pd.DataFrame, target: str, splitter: HashSplit) -> pd.DataFrame:
    block = cleaned(block, target)
    u = splitter.positions(block)
    split = splitter.split_of(u)
    keep = splitter.in_sample(u, split)
    return block.loc[keep].assign(__split__=split[keep], __position__=u[keep])


def _target_keys(y: pd.Series) -> pd.Series:
    """The target as encode_classes keys it: numbers (and booleans) as they are, anything else as text."""
    numeric = pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype)
    return y if numeric else y.astype(str)


def _statistics(block: pd.DataFrame, target: str, splitter: HashSplit, numeric: list[str],
                centers: np.ndarray, classification: bool) -> pd.DataFrame:
    """One row of partial sums for this block: rows per split, rows without a target, and over the
    training rows each numeric column's count, sum and sum of squares around its center, and the
    class counts."""
    from rayfit.data.preprocessing import as_float

    total = len(block)
    block = cleaned(block, target)
    split = splitter.split_of(splitter.positions(block))
    row = {"rows": total, "no_target": total - len(block)}
    row.update({f"rows_{name}": int((split == i).sum()) for i, name in enumerate(SPLITS)})
    train = block.loc[split == 0]
    values = as_float(train[numeric]).to_numpy() - centers if numeric else np.zeros((len(train), 0))
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    for j, column in enumerate(numeric):
        row[f"n:{column}"] = int(present[:, j].sum())
        row[f"s:{column}"] = float(filled[:, j].sum())
        row[f"q:{column}"] = float((filled[:, j] ** 2).sum())
    if classification:  # as JSON: a block's classes are its own
        counts = _target_keys(train[target]).value_counts()
        row["classes"] = json.dumps([[getattr(k, "item", lambda: k)(), int(c)] for k, c in counts.items()])
    return pd.DataFrame([row])


def _transformed(block: pd.DataFrame, target: str, splitter: HashSplit, pipeline, columns: list[str],
                 classes: Optional[list]) -> dict:
    """The block's training rows as the networks take them: x (float32 rows), y (class indices or values)."""
    block = cleaned(block, target)
    block = block.loc[splitter.split_of(splitter.positions(block)) == 0]
    x = np.asarray(pipeline.transform(block[columns]), dtype=np.float32)
    if classes is None:
        y = block[target].to_numpy(dtype=np.float32)
    else:
        y = pd.Index(classes).get_indexer(_target_keys(block[target])).astype(np.int64)
    return {"x": x, "y": y}


# --- the driver's side ---------------------------------------------------------------------------

def _read(source: str):
    import ray.data

    try:
        if Path(source).suffix.lower() in CSV_SUFFIXES:
            return ray.data.read_csv(source)
        return ray.data.read_parquet(source)
    except Exception as exc:
        raise _read_error(source, exc) from None


@contextmanager
def _blocks_failing_as_errors(source: str):
    """A block that fails in a Ray Data task (a CSV whose column types change down the file, a
    directory of Parquet files with different columns) is an `error:` naming the source and the
    cause, not a traceback from a worker; the worker's traceback stays in the Ray logs."""
    import ray.exceptions

    try:
        yield
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, UserError):
            raise UserError(str(cause)) from None
        reason = (str(cause).strip().splitlines() or [""])[0]
        raise UserError(f"could not prepare {source} on the cluster: {type(cause).__name__}: {reason}") from None


def _prepare_on_cluster(table: ClusterTable, seed: int, train_location, say: Say) -> Prepared:
    cfg = table.cfg
    log = list(table.log)
    target, classification = table.target, table.task == "classification"
    dataset = _read(cfg.source)
    rows = dataset.count()
    splitter = HashSplit.of(cfg, rows, seed)

    say(f"data: pass 1/3, samples of about {cfg.driver_rows:,} rows per split from {rows:,} rows")
    sampled = dataset.map_batches(_samples, batch_format="pandas", fn_args=(target, splitter)).to_pandas()
    sampled.columns = [str(c) for c in sampled.columns]
    sampled = sampled.sort_values("__position__", kind="stable", ignore_index=True)  # the same order every run
    split = sampled.pop("__split__").to_numpy()
    sampled = sampled.drop(columns="__position__")
    parts = {name: sampled.loc[split == i] for i, name in enumerate(SPLITS)}
    del sampled  # the driver's memory holds each sample once
    for name, part in parts.items():
        if len(part) == 0:
            raise UserError(f"too few rows for a prepare on the cluster: the {name} sample is empty ({rows} rows)")
    train = drop_uninformative_columns(parts["train"], target, cfg, log)
    features = [c for c in train.columns if c != target]
    if not features:
        raise UserError(f"no feature columns left in {cfg.source} after cleaning (only the target {target!r})")
    kinds = clean.column_kinds(train, target)
    # numbers are standardized by statistics over the whole training split (numeric_scaling: auto too)
    standard = cfg.model_copy(update={"numeric_scaling": "standard"})
    preprocessor = fit_preprocessor(train[features], np.arange(len(train)), kinds, standard, log,
                                    fitted_on="the train sample", say_scaling=not kinds["numeric"])

    say("data: pass 2/3, statistics over the whole training split")
    numeric = kinds["numeric"]
    scale = _numeric_scale(preprocessor) if numeric else None
    centers = scale.mean_[:len(numeric)].copy() if numeric else np.zeros(0)
    partial = dataset.map_batches(_statistics, batch_format="pandas",
                                  fn_args=(target, splitter, numeric, centers, classification)).to_pandas()
    totals = partial.drop(columns=["classes"], errors="ignore").fillna(0).sum()
    sizes = {name: int(totals[f"rows_{name}"]) for name in SPLITS}
    if totals["no_target"]:
        log.append(f"dropped {int(totals['no_target'])} row(s) with a missing target")
    log.append(f"split {sum(sizes.values()):,} rows about {split_label(cfg)} by a hash of each row (seed {seed}; "
               f"identical rows share a split, not stratified): {sizes['train']:,}/{sizes['val']:,}/{sizes['test']:,}")
    if numeric:
        _rescale(scale, numeric, centers, totals, sizes["train"], preprocessor, log)
    classes, class_names, counts = _classes(partial, target, log) if classification else (None, None, {})

    def xy(part: pd.DataFrame):
        x = np.asarray(preprocessor.transform(part[features]), dtype=np.float32)
        if classes is None:
            return x, part[target].to_numpy(dtype=np.float32)
        return x, pd.Index(classes).get_indexer(_target_keys(part[target])).astype(np.int64)

    samples = {name: Part(*xy(parts[name])) for name in SPLITS}
    if classes is not None:  # a class the training split never has cannot be predicted, nor judged
        for name in ("val", "test"):
            samples[name] = _known(samples[name], name, log)
    weights = None
    if classification:
        weights = class_weights_of_counts(np.asarray([counts[c] for c in classes]), cfg.class_weight, log,
                                          table.chosen_by)
    log.append(f"the driver holds samples of {'/'.join(f'{len(samples[p].X):,}' for p in SPLITS)} rows "
               f"(data.driver_rows: {cfg.driver_rows:,}): the baselines train on the train sample, every model "
               f"is judged on the validation and test samples; the networks train on all {sizes['train']:,} "
               f"training rows, streamed")

    say(f"data: pass 3/3, transform {sizes['train']:,} training rows and write them as Parquet")
    if train_location.exists():  # a resumed run writes it again
        train_location.delete()
    fs, path = train_location.filesystem()
    transformed = dataset.map_batches(_transformed, batch_format="pandas",
                                      fn_args=(target, splitter, preprocessor, features, classes))
    transformed.write_parquet(path, filesystem=fs)
    return Prepared(
        task=table.task, target=target, parts=samples, split=Split("row hash", sizes, seed),
        feature_names=[str(n) for n in preprocessor.get_feature_names_out()], raw_columns=features,
        class_names=class_names, class_weights=weights, preprocessor=preprocessor, log=log,
        n_rows=sum(sizes.values()), source=cfg.source, where="cluster", train_shards=train_location.uri,
    )


def _classes(partial: pd.DataFrame, target: str, log: list[str]) -> tuple[list, list[str], dict]:
    """The classes of the whole training split (sorted, as encode_classes sorts them), their names
    and their counts, added up from each block's."""
    counts: dict = {}
    for block in partial["classes"].dropna():
        for key, count in json.loads(block):
            counts[key] = counts.get(key, 0) + count
    classes = sorted(counts)
    if len(classes) < 2:
        found = f"a single class ({class_name(classes[0])!r})" if classes else "no class"
        raise UserError(f"target {target!r} has {found} in the training split; classification needs at least 2")
    names = [class_name(value) for value in classes]
    log.append(f"label-encoded target {target!r} into {len(classes)} classes (over the whole training split): "
               f"{shorten([f'{name}={i}' for i, name in enumerate(names)])}")
    return classes, names, counts


def _known(part: Part, name: str, log: list[str]) -> Part:
    keep = part.y >= 0
    if not keep.all():
        log.append(f"left out {int((~keep).sum())} {name} sample row(s) of classes the training split lacks")
    return Part(part.X[keep], part.y[keep])


def _numeric_scale(pipeline):
    return pipeline.named_steps["columns"].named_transformers_["numeric"].named_steps["scale"]


def _rescale(scale, numeric: list[str], centers: np.ndarray, totals: pd.Series, rows: int, pipeline,
             log: list[str]) -> None:
    """The numeric columns' scaling over every training row: each column's missing values count at
    the imputed median, as the pipeline fills them before it scales."""
    medians = pipeline.named_steps["columns"].named_transformers_["numeric"].named_steps["impute"].statistics_
    for j, column in enumerate(numeric):
        n, s, q = totals[f"n:{column}"], totals[f"s:{column}"], totals[f"q:{column}"]
        gap, fill = rows - n, medians[j] - centers[j]  # missing values, at the median (around the center)
        mean = (s + gap * fill) / rows
        var = max((q + gap * fill ** 2) / rows - mean ** 2, 0.0)
        scale.mean_[j] = centers[j] + mean
        scale.var_[j] = var
        scale.scale_[j] = np.sqrt(var) if var > 0 else 1.0
    scale.n_samples_seen_ = rows
    dates = len(scale.mean_) - len(numeric)
    log.append(f"standardized {len(numeric)} numeric column(s) with mean and scale over all {rows:,} training rows "
               f"(Ray Data, block by block)" + (f"; {dates} datetime part(s) on the train sample" if dates else ""))
