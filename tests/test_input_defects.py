"""Defects found by trying rayfit as a new user would, each pinned by a test that failed before
its fix: infinities in a CSV, tuning `linear` on a regression task, a second search of one model,
a run name that is a path, and `predict --out` onto an existing file."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rayfit.cli import main
from rayfit.config import DataConfig, validate
from rayfit.data import prepare
from rayfit.errors import UserError
from rayfit.evaluation.baselines import make_estimator


def test_infinities_in_a_csv_are_missing_values_recorded_in_the_prep_log(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["y"] = (frame["a"] > 0).astype(int)
    frame.loc[[3, 7], "a"] = np.inf
    frame.loc[11, "b"] = -np.inf
    path = tmp_path / "rows.csv"
    frame.to_csv(path, index=False)  # written as "inf" / "-inf", which pandas reads back as floats
    prepared = prepare(DataConfig(source=str(path), target="y"), 0)
    assert all(np.isfinite(x).all() for x in (prepared.X_train, prepared.X_val, prepared.X_test))
    assert "2 infinite values in 'a' treated as missing" in prepared.log
    assert "1 infinite value in 'b' treated as missing" in prepared.log
    rows = pd.DataFrame({"a": [np.inf], "b": [0.0]})  # predict-time rows too
    assert np.isfinite(prepared.preprocessor.transform(rows)).all()


def test_linear_tunes_c_for_both_tasks():
    """C is the inverse regularization strength of both tasks' estimators: Ridge's alpha = 1 / (2 C)."""
    space = validate({"tune": {"model": "linear"}}).tune.space
    assert list(space) == ["C"]
    assert make_estimator("linear", "regression", None, 0, params={"C": 2.0}).alpha == 0.25
    assert make_estimator("linear", "classification", None, 0, params={"C": 2.0}).C == 2.0


@pytest.mark.parametrize("raw, fragment", [
    ({"searches": [{"model": "torch"}]}, "searches.0: a second search of 'torch' (tune searches it already)"),
    ({"tune": {"model": "linear"}, "searches": [{"model": "random_forest"}, {"model": "linear"}]},
     "searches.1: a second search of 'linear'"),
    ({"name": "../elsewhere"}, "name: '../elsewhere' is not a plain name"),
    ({"name": "/tmp/abs"}, "name: '/tmp/abs' is not a plain name"),
    ({"name": "a/b"}, "is not a plain name"),
    # a name the user typed is refused as typed, never mended
    ({"name": "sales 2024"}, "name: 'sales 2024' is not a plain name"),
    ({"name": "penguins(1)"}, "name: 'penguins(1)' is not a plain name"),
    ({"name": "données"}, "name: 'données' is not a plain name"),
])
def test_configs_that_would_collide_or_escape_are_refused(raw, fragment):
    with pytest.raises(UserError) as caught:
        validate(raw)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("file, name", [
    ("sales 2024.csv", "sales-2024"),
    ("penguins(1).csv", "penguins-1"),
    ("Données clients (copie).parquet", "Donnees-clients-copie"),
    ("数据.csv", "run"),
    ("s3://bucket/in/q3 [final].csv", "q3-final"),
    ("..hidden...csv", "hidden"),
    ("plain_name-1.2.csv", "plain_name-1.2"),
])
def test_a_run_named_after_its_file_gets_a_plain_name(tmp_path, file, name):
    """`rayfit run --data "sales 2024.csv"` (a file named as people name them) runs: the name
    rayfit takes from the file is made plain; the config's own name is never touched."""
    from rayfit.config import build_experiment, name_from_file

    assert name_from_file(file) == name
    if "://" not in file:
        (tmp_path / file).write_text("a,y\n1,0\n")
        assert build_experiment(data=str(tmp_path / file), target="y").name == name
        config = tmp_path / file.replace(".csv", ".yaml").replace(".parquet", ".yaml")
        config.write_text("torch: {epochs: 1}\n")
        assert build_experiment(config).name == name


def test_a_second_search_of_a_model_is_fine_when_the_first_is_off():
    exp = validate({"tune": {"enabled": False}, "searches": [{"model": "torch"}]})
    assert exp.searches[0].model == "torch"


def test_predict_never_writes_over_an_existing_file(tmp_path, capsys):
    out = tmp_path / "predictions.csv"
    out.write_text("mine\n")
    assert main(["predict", str(tmp_path / "no-run"), "--data", "x.csv", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: --out")
    assert out.read_text() == "mine\n"


def test_a_reused_training_split_is_checked_against_the_run_s_arrays(tmp_path):
    import pyarrow.parquet as pq

    from rayfit.data.streaming import LABEL, write_split

    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20) % 2
    path = tmp_path / "train.parquet"
    write_split(X, y, path)
    written = path.stat().st_mtime_ns
    write_split(X, y, path)  # the same arrays: the file is reused as it is
    assert path.stat().st_mtime_ns == written
    write_split(X, 1 - y, path)  # not this run's split: written again
    assert pq.read_table(path)[LABEL].to_pylist() == list(1 - y)


def test_a_model_whose_files_changed_since_rayfit_wrote_them_is_not_loaded(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from rayfit.evaluation.fitted import SklearnModel, load_model
    from rayfit.evaluation.manifest import write_manifest

    X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    directory = tmp_path / "model"
    SklearnModel("linear", "classification", LogisticRegression().fit(X, y), 2).save(directory)
    write_manifest(directory)
    assert load_model(directory).predict(X).tolist() == [0, 0, 1, 1]
    other = tmp_path / "other"
    SklearnModel("linear", "classification", LogisticRegression(C=0.01).fit(X, 1 - y), 2).save(other)
    (directory / "estimator.joblib").write_bytes((other / "estimator.joblib").read_bytes())  # swapped in
    with pytest.raises(UserError, match="estimator.joblib differs from what rayfit wrote"):
        load_model(directory)


def test_a_missing_manifest_is_refused_unless_the_user_vouches_for_the_directory(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from rayfit.evaluation.fitted import SklearnModel, SoftVote, load_model
    from rayfit.evaluation.manifest import MANIFEST, trusting_unverified, write_manifest

    X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    model = tmp_path / "model"
    SklearnModel("linear", "classification", LogisticRegression().fit(X, y), 2).save(model)
    inner = model / "models" / "other"
    SoftVote("other", "classification", [SklearnModel("a", "classification", LogisticRegression().fit(X, y), 2)]
             ).save(inner)
    write_manifest(inner)
    write_manifest(model)  # last, over the inner directory and its manifest
    (model / MANIFEST).unlink()
    with pytest.raises(UserError, match="no MANIFEST.json, so rayfit cannot vouch for its files.*--trust-unverified"):
        load_model(model)
    with trusting_unverified():
        assert load_model(model).predict(X).tolist() == [0, 0, 1, 1]
    write_manifest(model)
    assert load_model(inner).predict(X).tolist() == [0, 0, 1, 1]  # an ensemble's members: vouched by its manifest
    (inner / MANIFEST).unlink()  # a manifest inside another: its removal shows in both
    with pytest.raises(UserError, match="models/other/MANIFEST.json differs from what rayfit wrote"):
        load_model(model)
    with pytest.raises(UserError, match="no MANIFEST.json"):
        load_model(inner)


def _written_checkpoint(directory, epoch: int):
    """A checkpoint as the training core writes it: its files, then their manifest."""
    from rayfit.evaluation.manifest import write_manifest

    directory.mkdir(parents=True)
    (directory / "weights.bin").write_bytes(bytes([epoch]) * 1000)
    (directory / "train_state.json").write_text(f'{{"epoch": {epoch}}}')
    write_manifest(directory)
    return directory


def _damage(checkpoint, how: str) -> None:
    newest = checkpoint / "weights.bin"
    if how == "truncate":
        newest.write_bytes(newest.read_bytes()[:10])
    else:
        newest.unlink()


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_newest_task_checkpoint_falls_back_to_the_one_before(damage, tmp_path):
    from rayfit.trainers.checkpoints import latest_checkpoint, save_checkpoint

    store = tmp_path / "checkpoints"
    for epoch in (1, 2):
        save_checkpoint(_written_checkpoint(tmp_path / f"written-{epoch}", epoch), store, epoch, keep=2)
    _damage(store / "checkpoint_000002", damage)
    said = []
    chosen = latest_checkpoint(store, said.append)
    assert chosen.path.endswith("checkpoint_000001")
    assert len(said) == 1 and "checkpoint_000002 is damaged (weights.bin" in said[0] \
        and "trying the one before it" in said[0]


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_ray_train_checkpoint_falls_back_to_the_newest_intact_one(damage, tmp_path):
    """Ray Train keeps a run's latest checkpoints side by side, named by the time they were taken."""
    from ray.train import Checkpoint

    from rayfit.trainers.checkpoints import intact_or_earlier

    times = ["2026-11-29_10-00-01.000001", "2026-11-29_10-00-02.000002", "2026-11-29_10-00-03.000003"]
    run = tmp_path / "torch_mlp"
    for epoch, taken in enumerate(times, 1):
        _written_checkpoint(run / f"checkpoint_{taken}", epoch)
    (run / "checkpoint_manager_snapshot.json").write_text("{}")  # Ray's own files beside them
    newest = Checkpoint(str(run / f"checkpoint_{times[2]}"))
    said = []
    assert intact_or_earlier(newest, said.append) is newest and said == []  # intact: taken as it is

    _damage(run / f"checkpoint_{times[2]}", damage)
    _damage(run / f"checkpoint_{times[1]}", damage)
    chosen = intact_or_earlier(newest, said.append)
    assert chosen.path == str(run / f"checkpoint_{times[0]}")
    assert [line.split(" is damaged")[0] for line in said] == \
        [f"checkpoint {run / f'checkpoint_{times[2]}'}", f"checkpoint {run / f'checkpoint_{times[1]}'}"]

    _damage(run / f"checkpoint_{times[0]}", damage)
    said.clear()
    assert intact_or_earlier(newest, said.append) is None
    assert said[-1] == "no intact checkpoint is left; training starts over from the first epoch"


def test_a_private_ray_s_dashboard_listens_on_loopback_only(ray_session):
    from ray._private.worker import get_dashboard_url

    assert get_dashboard_url().split(":")[0] == "127.0.0.1"


def test_a_search_stopped_before_its_first_state_is_started_anew(tmp_path):
    """Ctrl-C in a search's first moments leaves Tune's `tuner.pkl` and no experiment state; Tune's
    restore would rerun it from the pickle alone, without its search space (trials without `lr`)."""
    from rayfit.cluster.storage import Location
    from rayfit.tuning.search import _restorable

    from rayfit.tuning.saved_state import write_state_manifest

    said = []
    stopped = tmp_path / "search"
    stopped.mkdir()
    (stopped / "tuner.pkl").write_bytes(b"\x80\x04N.")
    assert not _restorable(Location.of(stopped), said.append) and not stopped.exists()  # nothing finished there

    stopped.mkdir()
    (stopped / "tuner.pkl").write_bytes(b"\x80\x04N.")
    (stopped / "experiment_state-2026-11-29_10-00-00.json").write_text("{}")
    write_state_manifest(Location.of(stopped))
    assert _restorable(Location.of(stopped), said.append) and stopped.is_dir() and not said


def _pickle_that_writes(marker) -> bytes:
    """A pickle whose unpickling creates `marker` (what a tampered tuner.pkl could do)."""
    import pickle

    class Writes:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps(Writes())


@pytest.mark.parametrize("changed", ["tuner.pkl", "experiment_state-2026-11-29_10-00-09.json", "no manifest"])
def test_a_search_state_that_differs_from_its_manifest_is_never_unpickled(changed, tmp_path):
    """`rayfit resume` restores a search only where Tune's saved state is what rayfit recorded: a
    replaced tuner.pkl, a state file added since or a missing manifest start the search anew."""
    from rayfit.cluster.storage import Location
    from rayfit.tuning.saved_state import STATE_MANIFEST, write_state_manifest
    from rayfit.tuning.search import _restorable

    search, marker = tmp_path / "search", tmp_path / "unpickled"
    search.mkdir()
    (search / "tuner.pkl").write_bytes(b"\x80\x04N.")
    (search / "experiment_state-2026-11-29_10-00-00.json").write_text("{}")
    write_state_manifest(Location.of(search))
    if changed == "no manifest":
        (search / STATE_MANIFEST).unlink()
    else:
        (search / changed).write_bytes(_pickle_that_writes(marker))
    said = []
    assert not _restorable(Location.of(search), said.append)
    assert not search.exists() and not marker.exists()  # cleared, and nothing of it was loaded
    assert len(said) == 1 and "its saved state is not what rayfit recorded" in said[0] \
        and "the search starts anew" in said[0], said


def test_a_trial_continues_from_its_own_newest_checkpoint_not_an_older_record(tmp_path):
    """A driver killed within a second of a trial's report leaves Tune's record a checkpoint behind."""
    from ray.train import Checkpoint

    from rayfit.trainers.checkpoints import newest_of_owner

    trial = tmp_path / "train_trial_482a5_00002_2_lr=0.0001_2026-11-29_15-48-18"
    for index in (0, 1, 2):
        (trial / f"checkpoint_00000{index}").mkdir(parents=True)
    recorded = Checkpoint(str(trial / "checkpoint_000001"))
    assert newest_of_owner(recorded, "482a5_00002").path == str(trial / "checkpoint_000002")
    assert newest_of_owner(recorded, "482a5_00003") is recorded  # another trial's (a PBT donor's): as given
    assert newest_of_owner(None, "482a5_00002") is None


def test_with_a_signing_key_a_manifest_rewritten_without_it_is_refused(tmp_path, monkeypatch, capsys):
    """Someone who can write a model directory can rewrite its manifest to match a swapped file;
    with RAYFIT_SIGNING_KEY set, manifests are signed and one written without the key is refused."""
    import json

    from sklearn.linear_model import LogisticRegression

    from rayfit.evaluation.fitted import SklearnModel, load_model
    from rayfit.evaluation.manifest import MANIFEST, SIGNING_KEY_ENV, write_manifest

    X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    directory = tmp_path / "model"
    SklearnModel("linear", "classification", LogisticRegression().fit(X, y), 2).save(directory)
    monkeypatch.setenv(SIGNING_KEY_ENV, "s3cr3t-signing-key")
    write_manifest(directory)
    assert "hmac_sha256" in json.loads((directory / MANIFEST).read_text())
    assert load_model(directory).predict(X).tolist() == [0, 0, 1, 1]
    # the swap, and a manifest rewritten to match it by someone without the key
    other = tmp_path / "other"
    SklearnModel("linear", "classification", LogisticRegression().fit(X, 1 - y), 2).save(other)
    (directory / "estimator.joblib").write_bytes((other / "estimator.joblib").read_bytes())
    with monkeypatch.context() as attacker:
        attacker.delenv(SIGNING_KEY_ENV)
        write_manifest(directory)
    with pytest.raises(UserError, match=f"{MANIFEST} was not written with the key in {SIGNING_KEY_ENV} "
                                        r"\(it is not signed\)") as refused:
        load_model(directory)
    assert "s3cr3t" not in str(refused.value)
    monkeypatch.setenv(SIGNING_KEY_ENV, "another-key")
    write_manifest(directory)
    monkeypatch.setenv(SIGNING_KEY_ENV, "s3cr3t-signing-key")
    with pytest.raises(UserError, match="its signature does not match"):
        load_model(directory)
    assert "s3cr3t" not in capsys.readouterr().out
