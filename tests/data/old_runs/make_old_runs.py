"""Make the old-run fixtures of tests/test_old_runs.py with the code of today.

    .venv/bin/python tests/data/old_runs/make_old_runs.py

Run it only to start the fixtures over (say, after a deliberate break of the run directory's
format, with a note in the commit): the point of the fixtures is that they were written by an
older rayfit and are NOT regenerated when the code moves. It writes, next to itself:

    table.csv          120 rows: a number and a category with gaps, a date, a yes/no target
    rows.csv           a few raw rows to predict (gaps, an unseen category, no target column)
    finished/          a finished run: every model kind (scikit-learn, the soft-voting ensemble,
                       PyTorch, Keras), each exported as a model directory (export.models: all)
    interrupted/       a run stopped by Ctrl-C (a real SIGINT) after its baselines, as its
                       evaluation began: `rayfit resume interrupted` loads the three recorded
                       models and finishes it (no networks, no training left: a short resume)
    expected.json      what `rayfit predict` answered for rows.csv, per model, when they were made;
                       what the models of the interrupted run answered once resumed; and every
                       name of rayfit's own that the runs' pickles (*.joblib) refer to

The tree model is a decision tree, not a random forest: the forest's 200 trees are not a setting
outside a search, and at about 0.8 MB a copy in each place a model is kept (its record, its
cross-validated refit, the ensemble's members, the export) they made the run 6 MB; both are
scikit-learn models, saved and loaded the same way.

Both runs are made from this folder with relative paths (`--data table.csv`), so their config
records `data.source: table.csv`, and `rayfit resume interrupted` run from a copy of this folder,
wherever it lies, finds the same data.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RUNS = ("finished", "interrupted")

COMMON = ["--data", "table.csv", "--target", "label", "--set", "tune.enabled=false",
          "--set", "report.importance_repeats=1"]
NETWORK = ["hidden_sizes=[8]", "epochs=3", "batch_size=16", "launch=task", "workers=1"]
FINISHED = COMMON + [
    "--set", "baselines.models=[dummy,linear,decision_tree]",
    *(arg for framework in ("torch", "keras") for setting in NETWORK for arg in ("--set", f"{framework}.{setting}")),
    "--set", "evaluation.cv=3", "--set", "evaluation.cv_networks=false", "--set", "evaluation.ensemble=2",
    "--set", "export.models=all",
]
INTERRUPTED = COMMON + [
    "--set", "baselines.models=[dummy,linear,decision_tree]", "--set", "torch.enabled=false",
    "--set", "keras.enabled=false", "--set", "evaluation.cv=none",
]


def table(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    num = rng.standard_normal(rows)
    city = rng.choice(["paris", "lyon", "nice"], rows)
    effect = pd.Series(city).map({"paris": 1.0, "lyon": -1.0, "nice": 0.0}).to_numpy()
    label = np.where(num + effect + 0.5 * rng.standard_normal(rows) > 0, "yes", "no")
    frame = pd.DataFrame({
        "num": num.round(3),
        "city": city,
        "signup": pd.date_range("2024-01-01", periods=rows, freq="3D").strftime("%Y-%m-%d"),
        "label": label,
    })
    frame.loc[rng.choice(rows, 12, replace=False), "num"] = np.nan
    frame.loc[rng.choice(rows, 12, replace=False), "city"] = None
    return frame


def raw_rows() -> pd.DataFrame:
    """Rows as a user would send them: gaps, a city never seen in training, a date past the table's."""
    return pd.DataFrame({
        "num": [1.5, -0.7, np.nan, 0.1, -2.0, 0.4],
        "city": ["paris", "lyon", "nice", None, "brest", "nice"],
        "signup": ["2024-02-01", "2024-06-30", "2024-03-15", "2024-09-09", "2025-01-01", "2024-04-20"],
    })


def interrupt_at_evaluation():
    """Ctrl-C (a real SIGINT to this process) as the run starts its evaluation: every model is
    trained and recorded, nothing is evaluated yet."""
    import rayfit.pipeline

    original = rayfit.pipeline.evaluate

    def evaluate(state):
        rayfit.pipeline.evaluate = original
        os.kill(os.getpid(), signal.SIGINT)  # rayfit's handler raises in this thread
        time.sleep(30)
        raise RuntimeError("SIGINT did not interrupt the run")

    rayfit.pipeline.evaluate = evaluate


def pickled_names(*runs: str) -> list[str]:
    """module:name of every class or function of rayfit's own that the runs' pickles refer to: what
    must keep resolving (or be aliased) for them to load."""
    import joblib
    from joblib import numpy_pickle

    found, original = set(), numpy_pickle.NumpyUnpickler.find_class

    def find_class(self, module, name):
        if module.split(".")[0] == "rayfit":
            found.add(f"{module}:{name}")
        return original(self, module, name)

    numpy_pickle.NumpyUnpickler.find_class = find_class
    try:
        for run in runs:
            for path in sorted(Path(run).rglob("*.joblib")):
                joblib.load(path)
    finally:
        numpy_pickle.NumpyUnpickler.find_class = original
    return sorted(found)


def answers(model, rows: pd.DataFrame) -> dict:
    """What a `rayfit.FittedModel` says of the rows, in the columns `rayfit predict` writes."""
    proba = model.predict_proba(rows)
    return {"prediction": model.predict(rows).tolist(), **{f"proba_{c}": proba[c].tolist() for c in proba.columns}}


def resumed_answers(rayfit_main) -> dict:
    """Resume a copy of the interrupted run, as the test does: what its models then answer."""
    import tempfile

    import rayfit

    with tempfile.TemporaryDirectory(prefix="old-runs-") as tmp:
        shutil.copytree("interrupted", Path(tmp) / "interrupted")
        shutil.copy("table.csv", tmp)
        os.chdir(tmp)
        try:
            assert rayfit_main(["resume", "interrupted"]) == 0, "the interrupted run did not resume"
            run = rayfit.load("interrupted")
            rows = pd.read_csv(HERE / "rows.csv")
            return {"best_model": run.best_model_name,
                    "models": {name: answers(run.models[name], rows) for name in run.models}}
        finally:
            os.chdir(HERE)


def main() -> int:
    import rayfit  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
    from rayfit.cli import main as rayfit_main
    from rayfit.cluster.session import ensure_ray
    from rayfit.predict import model_location, predict_file

    os.chdir(HERE)
    for name in RUNS:
        shutil.rmtree(name, ignore_errors=True)
    table().to_csv("table.csv", index=False)
    raw_rows().to_csv("rows.csv", index=False)
    # One private Ray for both runs, which join it (their configs keep the default ray.address)
    ensure_ray("local", num_cpus=2)

    assert rayfit_main(["run", *FINISHED, "--out", "finished"]) == 0, "the finished run failed"
    interrupt_at_evaluation()
    assert rayfit_main(["run", *INTERRUPTED, "--out", "interrupted"]) == 130, "the run was not interrupted"
    state = json.loads(Path("interrupted/run_state.json").read_text())
    assert state["status"] == "running" and sorted(state["stages"]) == ["decision_tree", "dummy", "linear"], state
    assert not Path("interrupted/metrics.json").exists()

    metrics = json.loads(Path("finished/metrics.json").read_text())
    best = metrics["best_model"]
    exported = sorted(p.name for p in Path("finished/model/models").iterdir())
    expected = {"best_model": best, "pickled": pickled_names(*RUNS), "models": {}}
    for name in [best, *exported]:
        kind = json.loads(model_location("finished", name).join("model.json").read_text())["kind"]
        frame = predict_file("finished", "rows.csv", name)
        expected["models"][name] = {"kind": kind, **{column: frame[column].tolist() for column in frame.columns}}
    expected["resumed"] = resumed_answers(rayfit_main)
    Path("expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    kinds = sorted({entry["kind"] for entry in expected["models"].values()})
    assert kinds == ["ensemble", "keras", "sklearn", "torch"], kinds
    print(f"best {best}; models {', '.join(expected['models'])}; kinds {', '.join(kinds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
