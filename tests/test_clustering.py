"""task: clustering: candidates, scores and the model that assigns new rows, then `rayfit run --task
clustering` end to end on blobs whose labels are known, and with no configuration at all."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from rayfit.cli import main
from rayfit.config import validate
from rayfit.evaluation.clustering import (ClusterModel, best_candidate, candidates, cluster_scores, fit_candidate)
from rayfit.evaluation.fitted import load_model
from rayfit.evaluation.manifest import write_manifest


def _blobs(rows=300, centers=4, seed=0):
    X, y = make_blobs(n_samples=rows, centers=centers, n_features=5, cluster_std=1.0, random_state=seed)
    return X.astype(np.float32), y


def _frame(rows=300, seed=0) -> pd.DataFrame:
    X, y = _blobs(rows, seed=seed)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["colour"] = np.where(X[:, 0] > np.median(X[:, 0]), "warm", "cold")  # a category, one-hot encoded
    frame["blob"] = np.array(["north", "south", "east", "west"])[y]
    return frame


def test_the_search_covers_every_k_and_brackets_dbscans_eps():
    X, _ = _blobs()
    cfg = validate({"clustering": {"k": [2, 5]}}).clustering
    found = candidates(cfg, X, np.arange(len(X)))
    assert [p["n_clusters"] for a, p in found if a == "kmeans"] == [2, 3, 4, 5]
    assert [p["n_clusters"] for a, p in found if a == "agglomerative"] == [2, 3, 4, 5]
    eps = [p["eps"] for a, p in found if a == "dbscan"]
    assert len(eps) >= 3 and eps == sorted(eps) and eps[0] > 0
    # above max_agglomerative_rows agglomerative clustering (quadratic memory) is left out
    small = validate({"clustering": {"max_agglomerative_rows": 100}}).clustering
    assert not [a for a, _ in candidates(small, X, np.arange(len(X))) if a == "agglomerative"]


def test_silhouette_chooses_the_true_number_of_blobs():
    X, y = _blobs()
    sample = np.arange(len(X))
    results = []
    for k in range(2, 8):
        _, assigned, _ = fit_candidate("kmeans", {"n_clusters": k}, X, seed=0)
        results.append({"params": {"n_clusters": k}, "scores": cluster_scores(X, assigned, y, sample)})
    best = best_candidate(results, "silhouette")
    assert best["params"]["n_clusters"] == 4
    assert best["scores"]["adjusted_rand"] > 0.95 and best["scores"]["normalized_mutual_info"] > 0.95
    # Davies-Bouldin is lower-is-better: chosen the other way round, and still the true k here
    assert best_candidate(results, "davies_bouldin")["params"]["n_clusters"] == 4


def test_dbscan_noise_is_judged_on_every_row_and_a_noise_clustering_is_not_chosen():
    X, y = _blobs()
    _, assigned, _ = fit_candidate("dbscan", {"eps": 1.5, "min_samples": 5}, X, seed=0)
    scores = cluster_scores(X, assigned, y, np.arange(len(X)))
    assert 0 < scores["noise_fraction"] < 0.5 and scores["n_clusters"] >= 2
    # with noise counted in its nearest cluster, the shape scores equal those of that clustering
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import NearestNeighbors

    filled = assigned.copy()
    noise = assigned == -1
    filled[noise] = assigned[~noise][NearestNeighbors(n_neighbors=1).fit(X[~noise]).kneighbors(X[noise])[1][:, 0]]
    assert scores["silhouette"] == pytest.approx(silhouette_score(X, filled))
    # a tiny eps calls (nearly) everything noise: never the chosen candidate
    _, all_noise, _ = fit_candidate("dbscan", {"eps": 0.01, "min_samples": 5}, X, seed=0)
    bad = {"params": {"eps": 0.01}, "scores": cluster_scores(X, all_noise, y, np.arange(len(X)))}
    good = {"params": {"eps": 1.5}, "scores": scores}
    assert best_candidate([bad, good], "silhouette") is good
    assert best_candidate([bad], "silhouette") is None


@pytest.mark.parametrize("algorithm, params", [("kmeans", {"n_clusters": 4}),
                                               ("agglomerative", {"n_clusters": 4, "linkage": "ward"}),
                                               ("dbscan", {"eps": 1.5, "min_samples": 5})])
def test_a_saved_clustering_assigns_new_rows_as_it_assigned_its_own(tmp_path, algorithm, params):
    X, _ = _blobs()
    estimator, assigned, _ = fit_candidate(algorithm, params, X, seed=0)
    model = ClusterModel(algorithm, estimator, X, assigned)
    model.save(tmp_path / "m")
    write_manifest(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    again = loaded.predict(X)
    clustered = assigned != -1
    # its own rows (noise aside, whose nearest core row may be within reach of a border row)
    assert np.mean(again[clustered] == assigned[clustered]) > 0.98
    # a point far from everything: DBSCAN calls it noise; the others put it somewhere
    far = np.full((1, X.shape[1]), 1e3, dtype=np.float32)
    assert (loaded.predict(far)[0] == -1) == (algorithm == "dbscan")
    assert loaded.predict_proba(X) is None


@pytest.fixture(scope="module")
def blob_run(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("clustering")
    data = root / "blobs.csv"
    _frame().to_csv(data, index=False)
    out = root / "run"
    code = main(["run", "--data", str(data), "--task", "clustering", "--target", "blob", "--out", str(out),
                 "--set", "clustering.k=[2, 6]"])
    assert code == 0
    return {"dir": out, "data": data, "metrics": json.loads((out / "metrics.json").read_text())}


def test_clustering_run_recovers_the_blobs(blob_run):
    metrics = blob_run["metrics"]
    assert metrics["task"] == "clustering" and metrics["primary_metric"] == "silhouette"
    assert set(metrics["models"]) == {"kmeans", "agglomerative", "dbscan"}
    best = metrics["models"][metrics["best_model"]]
    assert best["n_clusters"] == 4
    assert best["adjusted_rand"] > 0.9 and best["normalized_mutual_info"] > 0.9
    for entry in metrics["models"].values():
        for key in ("silhouette", "davies_bouldin", "calinski_harabasz", "adjusted_rand", "normalized_mutual_info",
                    "noise_fraction", "params", "train_time_s"):
            assert key in entry
        assert len(entry["search"]) >= 2  # each algorithm was searched, not fitted once
    assert [s["params"]["n_clusters"] for s in metrics["models"]["kmeans"]["search"]] == [2, 3, 4, 5, 6]
    assert metrics["dataset"] == {"rows": 300, "features": 7, "labels": "blob", "label_classes": 4}
    assert 0.99 < sum(metrics["embeddings"]["pca"]["explained_variance_ratio"]) <= 1.0 + 1e-6


def test_clustering_run_writes_assignments_plots_and_report(blob_run):
    out = blob_run["dir"]
    assignments = pd.read_csv(out / "assignments.csv")
    assert list(assignments.columns) == ["row", "cluster", "kmeans", "agglomerative", "dbscan"]
    assert len(assignments) == 300 and assignments["row"].tolist() == list(range(300))
    truth = pd.read_csv(blob_run["data"])["blob"]
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth, assignments["cluster"]) > 0.9
    plots = {p.stem for p in (out / "plots").glob("*.png")}
    assert plots == {"scores_by_setting", "explained_variance", "pca", "tsne", "umap", "dendrogram"}
    report = (out / "report.md").read_text()
    for section in ("## Clusterings", "## Cluster sizes", "## Embeddings", "adjusted Rand", "label column",
                    "UMAP embedding", "t-SNE embedding", "Dendrogram"):
        assert section in report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(plots)


def test_predict_assigns_raw_rows_to_the_runs_clusters(blob_run, tmp_path, capsys):
    rows = pd.read_csv(blob_run["data"]).drop(columns=["blob"]).head(50)
    rows.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(blob_run["dir"]), "--data", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "pred.csv")]) == 0
    predicted = pd.read_csv(tmp_path / "pred.csv")["prediction"]
    assigned = pd.read_csv(blob_run["dir"] / "assignments.csv")["cluster"].head(50)
    assert (predicted.to_numpy() == assigned.to_numpy()).mean() > 0.98

    # the same from Python: the run opened with rayfit.load, its leaderboard best first
    import rayfit

    run = rayfit.load(blob_run["dir"])
    assert list(run.best_model.predict(rows)) == list(predicted)
    board = run.leaderboard()
    assert set(board.index) == {"kmeans", "agglomerative", "dbscan"} and board.index[0] == run.best_model_name
    assert board["silhouette"].is_monotonic_decreasing


def test_clustering_needs_no_configuration(tmp_path, ray_session):
    """`rayfit run --data FILE --task clustering`: no target, no config (one embedding, to keep it quick)."""
    frame = _frame(rows=120, seed=3).drop(columns=["blob"])
    frame.to_csv(tmp_path / "points.csv", index=False)
    code = main(["run", "--data", str(tmp_path / "points.csv"), "--task", "clustering", "--out", str(tmp_path / "r"),
                 "--set", "clustering.embeddings=[pca]"])
    assert code == 0
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["dataset"]["labels"] is None
    assert "adjusted_rand" not in metrics["models"][metrics["best_model"]]
    # the progress the user saw, as the run's log keeps it
    assert re.search(r"clustering: \d+/\d+ kmeans n_clusters=2", (tmp_path / "r" / "run.log").read_text())
    assert re.search(r"clustering: done, best \w+ \(\d+ clusters\)", (tmp_path / "r" / "run.log").read_text())


UMAP_ALONE = """
import sys
from rayfit.evaluation.clustering import _umap_class
UMAP = _umap_class()
print("tensorflow" in sys.modules, UMAP.__name__)
import tensorflow  # still there for whatever the worker runs next
print(tensorflow.__name__)
"""


def test_umap_loads_without_tensorflow_and_leaves_it_importable():
    """umap-learn's package imports TensorFlow for ParametricUMAP (seconds of every fresh worker that
    draws a UMAP embedding); rayfit's UMAP comes without it, and TensorFlow still imports after."""
    done = subprocess.run([sys.executable, "-c", UMAP_ALONE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "UMAP", "tensorflow"]
