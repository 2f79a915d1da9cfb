"""Clustering and dimensionality reduction (`task: clustering`): the candidates searched, how each
is fitted and scored, the model that assigns new rows, and the 2-D embeddings of the report.

Every candidate (an algorithm with one setting: K-Means with k = 4, DBSCAN with one eps) is fitted
by `fit_candidate` inside its own Ray task and scored by `cluster_scores`; the stage
(rayfit/stages/clustering.py) keeps the best candidate of each algorithm and the best of all.

Scores on the clustering alone: silhouette (higher is better, -1..1), Davies-Bouldin (lower),
Calinski-Harabasz (higher). With a label column: adjusted Rand index and normalized mutual
information against it. DBSCAN's noise rows (cluster -1) count in the shape scores as members of
the cluster of their nearest clustered row (so that every algorithm is judged on every row) and are
counted in `noise_fraction`; for the label scores they are one more cluster, as they are in the
assignments.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import joblib
import numpy as np

from rayfit import metrics
from .fitted import LOADERS, ArrayModel

ALGORITHMS = ("kmeans", "agglomerative", "dbscan")
SHAPE_METRICS = metrics.names(metrics.CLUSTERING, choosing=True)  # on the clusters' shape alone
LABEL_METRICS = tuple(m for m in metrics.names(metrics.CLUSTERING) if m not in SHAPE_METRICS)  # against a label column
DBSCAN_QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # eps candidates: these quantiles of the k-distance
MAX_NOISE = 0.5  # a DBSCAN candidate calling more than half the rows noise has found no clusters


def candidates(cfg, X: np.ndarray, sample: np.ndarray) -> list[tuple[str, dict]]:
    """(algorithm, parameters) of every candidate the run fits; `sample` is the row sample that
    DBSCAN's eps candidates are read from."""
    low, high = cfg.k
    ks = range(low, min(high, len(X) - 1) + 1)
    out: list[tuple[str, dict]] = []
    for algorithm in cfg.algorithms:
        if algorithm == "kmeans":
            out += [("kmeans", {"n_clusters": k}) for k in ks]
        elif algorithm == "agglomerative":
            if len(X) <= cfg.max_agglomerative_rows:
                out += [("agglomerative", {"n_clusters": k, "linkage": cfg.linkage}) for k in ks]
        elif algorithm == "dbscan":
            out += [("dbscan", {"eps": eps, "min_samples": cfg.min_samples})
                    for eps in dbscan_eps(X[sample], cfg.min_samples)]
    return out


def dbscan_eps(X: np.ndarray, min_samples: int) -> list[float]:
    """Candidate eps values: quantiles of each row's distance to its `min_samples`-th neighbour
    (the knee of that curve is the usual choice; the quantiles bracket it)."""
    from sklearn.neighbors import NearestNeighbors

    neighbours = min(min_samples, len(X) - 1)
    distances, _ = NearestNeighbors(n_neighbors=neighbours + 1).fit(X).kneighbors(X)
    kth = distances[:, -1]
    values = sorted({round(float(np.quantile(kth, q)), 6) for q in DBSCAN_QUANTILES})
    return [v for v in values if v > 0]


def build(algorithm: str, params: dict, seed: int, threads: int):
    from sklearn.cluster import DBSCAN, AgglomerativeClustering, KMeans

    if algorithm == "kmeans":
        return KMeans(n_clusters=params["n_clusters"], n_init=10, random_state=seed)
    if algorithm == "agglomerative":
        return AgglomerativeClustering(n_clusters=params["n_clusters"], linkage=params["linkage"])
    if algorithm == "dbscan":
        return DBSCAN(eps=params["eps"], min_samples=params["min_samples"], n_jobs=threads)
    raise ValueError(f"unknown clustering algorithm {algorithm!r}")


def fit_candidate(algorithm: str, params: dict, X: np.ndarray, seed: int, threads: int = 1):
    """Fit one candidate on every row: (the fitted estimator, each row's cluster, seconds)."""
    from threadpoolctl import threadpool_limits

    estimator = build(algorithm, params, seed, threads)
    started = time.perf_counter()
    with threadpool_limits(limits=threads):
        assigned = estimator.fit_predict(X)
    return estimator, np.asarray(assigned, dtype=np.int64), time.perf_counter() - started


def cluster_scores(X: np.ndarray, assigned: np.ndarray, labels: Optional[np.ndarray], sample: np.ndarray) -> dict:
    """Every metric of one clustering. The shape metrics are computed on `sample` (silhouette is
    quadratic in the rows), noise rows left out; NaN where they are undefined (fewer than 2 clusters)."""
    clustered = assigned != -1
    n_clusters = int(len(np.unique(assigned[clustered])))
    scores: dict = {"n_clusters": n_clusters, "noise_fraction": round(float(1 - clustered.mean()), 4)}
    shaped = _noise_to_nearest(X, assigned)[sample]
    defined = 2 <= len(np.unique(shaped)) < len(sample)
    for name in SHAPE_METRICS:
        scores[name] = float(metrics.get(name).scorer(X[sample], shaped)) if defined else float("nan")
    if labels is not None:
        known = labels != -1
        for name in LABEL_METRICS:
            scores[name] = float(metrics.get(name).scorer(labels[known], assigned[known]))
    return scores


def _noise_to_nearest(X: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """Each noise row (-1) in the cluster of its nearest clustered row: the shape scores judge
    DBSCAN on every row, as they judge the others, not on the rows it found easy."""
    noise = assigned == -1
    if not noise.any() or noise.all():
        return assigned
    from sklearn.neighbors import NearestNeighbors

    _, nearest = NearestNeighbors(n_neighbors=1).fit(X[~noise]).kneighbors(X[noise])
    filled = assigned.copy()
    filled[noise] = assigned[~noise][nearest[:, 0]]
    return filled


def admissible(scores: dict) -> bool:
    """A candidate that found clusters: at least 2, most rows in one of them, scores defined."""
    return scores["n_clusters"] >= 2 and scores["noise_fraction"] <= MAX_NOISE and np.isfinite(scores["silhouette"])


def best_candidate(results: list[dict], metric: str) -> Optional[dict]:
    """The admissible result with the best `metric`; the first one of a tie (fewer clusters come first)."""
    best = None
    for result in results:
        if admissible(result["scores"]) and (best is None or metrics.is_better(metric, result["scores"][metric],
                                                                              best["scores"][metric])):
            best = result
    return best


class ClusterModel(ArrayModel):
    """A fitted clustering that assigns new rows: K-Means to the nearest centre; agglomerative and
    DBSCAN, which have no rule for unseen rows, to the cluster of the nearest row they clustered
    (DBSCAN: of the nearest core row, and noise, -1, when that row is farther than eps)."""

    kind = "clusters"

    def __init__(self, name: str, estimator, X: Optional[np.ndarray] = None, assigned: Optional[np.ndarray] = None):
        super().__init__(name, "clustering")
        self.estimator = estimator
        self.reference = self._reference(X, assigned) if X is not None else None

    def _reference(self, X, assigned):
        """The rows (and their clusters) new rows are matched against; none for K-Means."""
        if hasattr(self.estimator, "cluster_centers_"):
            return None
        if hasattr(self.estimator, "core_sample_indices_"):
            core = self.estimator.core_sample_indices_
            return np.asarray(X[core], dtype=np.float32), assigned[core]
        return np.asarray(X, dtype=np.float32), assigned

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if self.reference is None:
            return np.asarray(self.estimator.predict(X), dtype=np.int64)
        from sklearn.neighbors import NearestNeighbors

        rows, clusters = self.reference
        if len(rows) == 0:  # DBSCAN with no core rows: everything is noise
            return np.full(len(X), -1, dtype=np.int64)
        distance, nearest = NearestNeighbors(n_neighbors=1).fit(rows).kneighbors(X)
        out = clusters[nearest[:, 0]].astype(np.int64)
        eps = getattr(self.estimator, "eps", None)
        if eps is not None:
            out[distance[:, 0] > eps] = -1
        return out

    def predict_proba(self, X):
        return None

    def _save_files(self, directory: Path) -> None:
        joblib.dump({"estimator": self.estimator, "reference": self.reference}, directory / "clusters.joblib")

    @classmethod
    def load(cls, directory: Path, meta: dict) -> "ClusterModel":
        saved = joblib.load(Path(directory) / "clusters.joblib")
        model = cls(meta["name"], saved["estimator"])
        model.reference = saved["reference"]
        return model


LOADERS[ClusterModel.kind] = ClusterModel.load


# -- dimensionality reduction ----------------------------------------------------------------------

def embed(method: str, X: np.ndarray, seed: int, threads: int = 1) -> dict:
    """A 2-D view of the rows X: {"coords": (n, 2)}, and for PCA the explained variance ratio of
    every component (the report's scree plot)."""
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(limits=threads):
        if method == "pca":
            from sklearn.decomposition import PCA

            components = min(X.shape[0], X.shape[1], 50)
            pca = PCA(n_components=components, random_state=seed).fit(X)
            out = {"coords": pca.transform(X)[:, :2], "explained_variance_ratio": pca.explained_variance_ratio_.tolist()}
        elif method == "tsne":
            from sklearn.manifold import TSNE

            perplexity = float(min(30, max(2, (len(X) - 1) // 3)))
            out = {"coords": TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)}
        elif method == "umap":
            import warnings

            UMAP = _umap_class()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "n_jobs overridden by random_state": seeded, so one thread
                reducer = UMAP(n_components=2, n_neighbors=min(15, len(X) - 1), random_state=seed)
                out = {"coords": reducer.fit_transform(X)}
        else:
            raise ValueError(f"unknown embedding {method!r}")
    out["coords"] = np.asarray(out["coords"], dtype=np.float32)
    if out["coords"].shape[1] < 2:  # one feature: a line, drawn along x
        out["coords"] = np.column_stack([out["coords"][:, 0], np.zeros(len(X), dtype=np.float32)])
    out["seconds"] = time.perf_counter() - started
    return out


def _umap_class():
    """umap-learn's package imports TensorFlow, when installed, for its ParametricUMAP: about 6 s of a
    fresh worker's start on 2 cores, for the plain UMAP that needs none of it. Imported with
    TensorFlow hidden (umap passes over ParametricUMAP on the ImportError), unless either is loaded."""
    import sys

    if "umap" not in sys.modules and "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError
        try:
            import umap  # noqa: F401
        finally:
            del sys.modules["tensorflow"]
    from umap import UMAP

    return UMAP


def dendrogram_linkage(X: np.ndarray, method: str) -> np.ndarray:
    """The merge tree (scipy's linkage matrix) of hierarchical clustering on the rows X."""
    from scipy.cluster.hierarchy import linkage

    return linkage(X, method=method)
