"""`rayfit run` on a CSV it has never seen: the suite's one full run (PyTorch and Keras each as a
2-worker Ray Train group, Ray Tune; tests/conftest.py's `finished_run`), checked throughout."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import tree_digest
from rayfit.cli import main
from rayfit.config import validate
from rayfit.evaluation.baselines import baselines_for
from rayfit.metrics import names as metric_names, rank_models

CLASSIFICATION_KEYS = set(metric_names("classification"))
MODELS = {*baselines_for("default", "classification"), "ensemble", "torch_mlp", "keras_mlp", "torch_tuned"}


@pytest.fixture(scope="module")
def run(finished_run):
    return finished_run


def test_run_directory_holds_every_artifact(run):
    out = run["dir"]
    for name in ("report.html", "report.md", "metrics.json", "config.yaml", "best_params.yaml", "run.log"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    plots = {p.stem for p in (out / "plots").glob("*.png")}
    assert {"model_comparison", "learning_curves", "confusion_matrix", "roc_curve", "pr_curve", "calibration",
            "feature_importance"} <= plots
    assert (out / "model" / "model.json").is_file()
    assert (out / "model" / "preprocessor.joblib").is_file()
    assert "Without rayfit:" in (out / "model" / "README.md").read_text()
    best_kind = json.loads((out / "model" / "model.json").read_text())["kind"]
    assert (out / "model" / "model.torchscript.pt").is_file() == (best_kind == "torch")


def test_metrics_json_follows_the_contract(run):
    metrics = run["metrics"]
    assert metrics["task"] == "classification" and metrics["primary_metric"] == "accuracy"
    assert metrics["best_model"] in MODELS
    assert metrics["dataset"]["classes"] == 2 and metrics["dataset"]["rows"] == 360
    # every model trained, and the ensemble where greedy selection took two members or more
    assert MODELS - {"ensemble"} <= set(metrics["models"]) <= MODELS
    for name, entry in metrics["models"].items():
        assert set(entry) >= {"framework", "test", "val", "train_time_s"}, name
        assert set(entry["test"]) == CLASSIFICATION_KEYS and set(entry["val"]) == CLASSIFICATION_KEYS
        assert entry["train_time_s"] > 0
    assert metrics["models"]["torch_mlp"]["framework"] == "torch"
    assert metrics["models"]["keras_mlp"]["framework"] == "keras"
    # Both frameworks really ran as Ray Train worker groups of 2 (Keras under TensorflowTrainer).
    for name in ("torch_mlp", "keras_mlp"):
        entry = metrics["models"][name]
        assert (entry["launch"], entry["workers"], entry["device"], entry["amp"]) == ("ray_train", 2, "cpu", False)
        assert entry["launch_reason"] == f"{entry['framework']}.launch: ray_train"
    assert metrics["resources"]["cpus"] == 2 and metrics["resources"]["nodes"] == 1
    # The best model is the best by the primary metric on held-out data: cross-validation for the
    # classic-ML models and their ensemble (a 360-row table), validation for the networks.
    assert metrics["selection"]["method"] == "cv"
    chosen_by = {name: m["cv"]["accuracy"]["mean"] if m["selected_on"] == "cv" else m["val"]["accuracy"]
                 for name, m in metrics["models"].items()}
    assert {name for name, m in metrics["models"].items() if m["selected_on"] == "val"} == {
        "torch_mlp", "keras_mlp", "torch_tuned"}
    assert chosen_by[metrics["best_model"]] == max(chosen_by.values())
    assert metrics["selection"]["on_validation"] == dict.fromkeys(("torch_mlp", "keras_mlp", "torch_tuned"),
                                                                  "evaluation.cv_networks: false")


def test_models_learn_well_beyond_the_dummy(run):
    models = run["metrics"]["models"]
    dummy = models["dummy"]["test"]["accuracy"]
    best = models[run["metrics"]["best_model"]]["test"]["accuracy"]
    assert best >= dummy + 0.2, (best, dummy)
    for name in ("torch_mlp", "keras_mlp", "torch_tuned"):
        assert models[name]["test"]["accuracy"] >= dummy + 0.15, (name, models[name]["test"])


def test_the_best_models_have_their_permutation_importance(run):
    """One function for the best models of any framework (report.importance_models, 3 by default):
    the label is made of num1, num2 and city, and each of them finds one of those its most important
    input; every other model says why it has none."""
    models = run["metrics"]["models"]
    measured = [name for name, entry in models.items() if entry["permutation_importance"] is not None]
    assert set(measured) == set(rank_models(models, run["metrics"]["primary_metric"])[:3])
    for name in measured:
        entry = models[name]["permutation_importance"]
        assert len(entry["top"]) >= 3 and all(len(row) == 3 for row in entry["top"]), name
        assert entry["rows"] == entry["of_rows"] and entry["repeats"] == 5  # a small test split: every row
        assert entry["top"][0][0] in ("num1", "num2") or entry["top"][0][0].startswith("city"), (name, entry)
    for name in set(models) - set(measured):
        assert "importance_models" in models[name]["permutation_importance_note"]
    report = (run["dir"] / "report.md").read_text()
    assert "Permutation importance of the 3 best models" in report and all(f"| {name} |" in report for name in measured)


def test_cleaning_is_recorded_in_the_report(run):
    report = (run["dir"] / "report.md").read_text()
    for fragment in ("customer_id", "const", "signup", "num1", "city"):
        assert fragment in report, fragment
    html = (run["dir"] / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and 'src="plots/' not in html


def test_tuning_results_are_saved(run):
    best_params = yaml.safe_load((run["dir"] / "best_params.yaml").read_text())
    assert set(best_params) == {"lr", "hidden_sizes", "dropout", "batch_size"}
    tuning = run["metrics"]["tuning"]
    assert tuning["trials"] == 4 and tuning["epochs_budget"] == 24 and 4 <= tuning["epochs_trained"] <= 24


def test_resolved_config_is_saved(run):
    exp = validate(yaml.safe_load((run["dir"] / "config.yaml").read_text()))
    assert exp.torch.epochs == 20 and exp.tune.num_samples == 4 and exp.data.target == "label"


def test_ray_output_goes_to_the_log_not_the_terminal(run):
    log = (run["dir"] / "run.log").read_text()
    # What Ray's processes print (a training task's TensorFlow start-up, Tune's experiment table).
    for marker in ("(RayTrainWorker", "Configuration for experiment"):
        assert marker in log and marker not in run["terminal"], marker
    assert "torch_mlp" in run["terminal"] and "tune" in run["terminal"]  # the progress display
    # each finished trial: the search's best so far and how many trials ended before max_t
    trials = re.findall(r"torch_tuned: (\d)/4 trial \S+, best val_loss (\d\.\d{4})", run["terminal"])
    assert [int(done) for done, _ in trials] == [1, 2, 3, 4], run["terminal"]
    bests = [float(best) for _, best in trials]
    assert bests == sorted(bests, reverse=True)  # the best so far never gets worse
    assert re.search(r"torch_mlp: \d+/20 .*, about [\d.]+ (ms|s) left", run["terminal"])  # a network's epochs


def test_predict_raw_rows_with_the_exported_model(run, messy_csv, tmp_path):
    preds = tmp_path / "preds.csv"
    assert main(["predict", str(run["dir"]), "--data", str(messy_csv), "--out", str(preds)]) == 0
    frame = pd.read_csv(preds)
    truth = pd.read_csv(messy_csv)["label"]
    assert len(frame) == len(truth)
    assert set(frame["prediction"]) <= {"yes", "no"}
    assert (frame["prediction"] == truth).mean() > 0.75
    assert {"proba_no", "proba_yes"} <= set(frame.columns)


def test_predict_names_the_columns_its_rows_lack(run, messy_csv, tmp_path, capsys):
    rows = pd.read_csv(messy_csv).drop(columns=["num2", "label"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run["dir"]), "--data", str(tmp_path / "rows.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert "lacks 1 column the model was trained on: num2" in err[0], err
    assert not out.exists()


def test_a_finished_run_is_never_overwritten(run, messy_csv, capsys):
    before = tree_digest(run["dir"])
    assert main(["run", "--data", str(messy_csv), "--target", "label", "--out", str(run["dir"])]) == 2
    assert "already exists" in capsys.readouterr().err
    assert tree_digest(run["dir"]) == before


def test_the_report_says_how_each_network_ran(run):
    report = (run["dir"] / "report.md").read_text()
    section = report[report.index("## How the networks ran"):]
    assert "Ray cluster: 2 CPUs, 0 GPUs." in section
    assert "| torch_mlp | Ray Train worker group | 2 | cpu |" in section
    assert "| keras_mlp | Ray Train worker group | 2 | cpu |" in section


def test_rayfit_report_rebuilds_the_same_report_without_training(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run["dir"], copy)
    before = (copy / "report.md").read_text()
    for name in ("report.md", "report.html"):
        (copy / name).unlink()
    shutil.rmtree(copy / "plots")
    trained = {p: p.stat().st_mtime_ns for p in (copy / "models").rglob("*") if p.is_file()}
    assert main(["report", str(copy)]) == 0
    after = (copy / "report.md").read_text()

    def body(text):  # all but the line saying when it was made
        return [line for line in text.splitlines() if not line.startswith("Created ")]

    assert body(after) == body(before)
    assert {p.stem for p in (copy / "plots").glob("*.png")} == {p.stem for p in (run["dir"] / "plots").glob("*.png")}
    assert (copy / "report.html").is_file()
    assert {p: p.stat().st_mtime_ns for p in (copy / "models").rglob("*") if p.is_file()} == trained  # nothing retrained


def test_predict_on_the_raw_test_rows_gives_the_reports_test_predictions(run, messy_csv, tmp_path):
    """test_predictions.csv holds what the report was drawn from, by source row; `rayfit predict` on
    those raw rows, from the exported model, gives the same answers."""
    expected = pd.read_csv(run["dir"] / "test_predictions.csv")
    assert len(expected) == run["metrics"]["dataset"]["rows"] - 252 - 54  # the test split (70/15/15 of 360)
    best = run["metrics"]["models"][run["metrics"]["best_model"]]
    assert (expected["actual"] == expected["prediction"]).mean() == pytest.approx(best["test"]["accuracy"])
    pd.read_csv(messy_csv).iloc[expected["row"]].drop(columns=["label"]).to_csv(tmp_path / "rows.csv", index=False)
    assert main(["predict", str(run["dir"]), "--data", str(tmp_path / "rows.csv"), "--out", str(tmp_path / "p.csv")]) == 0
    got = pd.read_csv(tmp_path / "p.csv")
    assert list(got["prediction"]) == list(expected["prediction"])
    for column in ("proba_no", "proba_yes"):
        assert np.allclose(got[column], expected[column], atol=1e-6)


def test_every_model_is_exported_and_predicts_by_name(run, messy_csv, tmp_path, capsys):
    best = run["metrics"]["best_model"]
    others = run["dir"] / "model" / "models"
    assert {p.name for p in others.iterdir()} == set(run["metrics"]["models"]) - {best}
    for name in ("torch_mlp", "keras_mlp"):  # each network also as ONNX, answering as itself
        assert (others / name / "model.onnx").is_file(), name
    out = tmp_path / "keras.csv"
    assert main(["predict", str(run["dir"]), "--data", str(messy_csv), "--model", "keras_mlp", "--out", str(out)]) == 0
    assert (pd.read_csv(out)["prediction"] == pd.read_csv(messy_csv)["label"]).mean() > 0.7
    assert main(["predict", str(run["dir"]), "--data", str(messy_csv), "--model", "nope"]) == 2
    assert "--model nope: not among this run's exported models" in capsys.readouterr().err


def test_mlflow_holds_the_run_its_models_and_trials(run):
    """Read back with MLflow's own client: one parent run, a child per model, a child per trial under
    the tuned model's, the config as params, every epoch of a network, the report as an artifact."""
    from mlflow import MlflowClient

    from rayfit.evaluation.tracking import default_uri

    metrics = run["metrics"]
    client = MlflowClient(tracking_uri=default_uri(run["dir"]))
    experiment = client.get_experiment_by_name(yaml.safe_load((run["dir"] / "config.yaml").read_text())["name"])
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["rayfit.best_model"] == metrics["best_model"]
    assert parent.data.params["torch.epochs"] == "20" and parent.data.params["tune.num_samples"] == "4"
    best_test = metrics["models"][metrics["best_model"]]["test"]["accuracy"]
    assert parent.data.metrics["best_test_accuracy"] == pytest.approx(best_test)
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == set(metrics["models"])
    for name, child in children.items():
        assert child.data.metrics["test_accuracy"] == pytest.approx(metrics["models"][name]["test"]["accuracy"]), name
    history = client.get_metric_history(children["torch_mlp"].info.run_id, "val_loss")
    state = json.loads((run["dir"] / "run_state.json").read_text())
    assert [m.step for m in history] == [row["epoch"] for row in state["stages"]["torch_mlp"]["history"]]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == children["torch_tuned"].info.run_id]
    assert len(trials) == metrics["tuning"]["trials"] == 4
    assert all({"lr", "batch_size"} <= set(t.data.params) for t in trials)
    assert {"report.html", "metrics.json", "model"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_tensorboard_event_files_hold_every_networks_epochs(run):
    import tensorflow as tf

    state = json.loads((run["dir"] / "run_state.json").read_text())
    for name in ("torch_mlp", "keras_mlp", "torch_tuned"):
        files = list((run["dir"] / "tensorboard" / name).glob("events.out.tfevents.*"))
        assert len(files) == 1, name
        steps = [value_step for event in tf.compat.v1.train.summary_iterator(str(files[0]))
                 for value_step in [event.step] for value in event.summary.value if value.tag == "loss/val"]
        assert steps == [row["epoch"] for row in state["stages"][name]["history"]], name
    assert len(list((run["dir"] / "tensorboard" / "torch_tuned" / "trials").iterdir())) == 4


def test_the_report_renders_cleanly_in_chromium(run, chromium):
    """Every plot loaded, no console error, no sideways scrolling on a laptop, and in print every
    table and figure within an A4 page (test-artifacts/customers.png and .pdf are kept)."""
    from browser import assert_renders_cleanly, check_in_browser

    found = check_in_browser(run["dir"] / "report.html", chromium, "customers")
    assert_renders_cleanly(found, at_least_images=7)
    alts = {alt for alt, _, _ in found["images"]}
    assert any("confusion" in alt.lower() for alt in alts) and any("learning" in alt.lower() for alt in alts), alts
