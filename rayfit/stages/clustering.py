"""Stage: clustering (`task: clustering`). Every candidate (K-Means for each k, agglomerative for
each k, DBSCAN for each eps) and every 2-D embedding (PCA, t-SNE, UMAP) is one Ray task of
`clustering.cpus_per_model` CPUs, run side by side and collected as they finish. The best candidate
of each algorithm, and the best of all, by `clustering.metric`; then the run's files:

    model/            the best clustering (assigns new rows: `rayfit predict`) and the preprocessing
    assignments.csv   each input row's cluster: the best clustering's, and each algorithm's best
    metrics.json      task, primary_metric, best_model, dataset, models (each algorithm's best and
                      its search), embeddings
    plots/, report.html, report.md

A resumed clustering run starts this stage over: its candidates take seconds, not hours.
"""
from __future__ import annotations

import shutil
import time

import numpy as np
import pandas as pd

from rayfit.config import to_yaml
from rayfit.data.prepared import ALL
from rayfit.data.preprocessing import save_preprocessing
from rayfit.errors import UserError
from rayfit.evaluation.clustering import ALGORITHMS, ClusterModel, best_candidate, candidates
from rayfit.evaluation.fitted import MODEL_DIR
from rayfit.evaluation.manifest import write_manifest
from rayfit.evaluation.results import METRICS_FILE, write_results
from rayfit.run_dir import LOG_FILE
from rayfit.stages.state import RunState

ASSIGNMENTS_FILE = "assignments.csv"
DENDROGRAM_ROWS = 300  # rows the dendrogram's tree is built on (a sample beyond)
ARTIFACTS = {"best clustering + preprocessing": "model/", "assignments": ASSIGNMENTS_FILE, "metrics": METRICS_FILE,
             "config": "config.yaml", "log": LOG_FILE}


def check_clustering_fits(state: RunState) -> None:
    """A candidate's CPUs must fit on one node (Ray would wait for ever otherwise)."""
    from rayfit.cluster.plan import ClusterShape

    cluster, cpus = ClusterShape.current(), state.exp.clustering.cpus_per_model
    if cluster.slots(cpus) < 1:
        raise UserError(f"clustering.cpus_per_model: {cpus} CPUs per candidate, but no node of the Ray cluster has "
                        f"that many ({cluster.describe()}); lower clustering.cpus_per_model")


def run_clustering(state: RunState) -> None:
    import ray

    from rayfit.cluster.launch import as_finished, start

    exp, data, display = state.exp, state.prepared, state.display
    X, labels = data.parts[ALL].X, data.parts[ALL].y  # every row: clustering holds nothing out
    cfg, seed = exp.clustering, exp.seed
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(X), min(len(X), cfg.sample_rows), replace=False))
    todo = candidates(cfg, X, sample)
    notes = []
    if "agglomerative" in cfg.algorithms and len(X) > cfg.max_agglomerative_rows:
        notes.append(f"agglomerative clustering left out: {len(X)} rows, more than "
                     f"clustering.max_agglomerative_rows={cfg.max_agglomerative_rows} (its memory grows with rows squared)")
    if "dbscan" in cfg.algorithms and not any(a == "dbscan" for a, _ in todo):
        notes.append("dbscan left out: every row lies at distance 0 from its neighbours")
    for note in notes:
        display.say(f"clustering: {note}")
    if not todo:
        raise UserError("clustering: no candidate to fit (clustering.algorithms names none that applies here)")

    cpus = cfg.cpus_per_model
    X_ref, labels_ref = ray.put(X), (ray.put(labels) if labels is not None else None)
    pending = [start(_fit_and_score, algorithm, params, X_ref, labels_ref, sample, seed, cpus,
                     name=f"rayfit.cluster[{algorithm}]",
                     cpus=cpus, tag=("fit", i)) for i, (algorithm, params) in enumerate(todo)]
    pending += [start(_embed, method, X_ref, sample, seed, cpus, name=f"rayfit.embed[{method}]", cpus=cpus,
                      tag=("embed", method)) for method in cfg.embeddings]
    total = len(pending)
    display.start("clustering", f"{len(todo)} clusterings of {len(X)} rows, {len(cfg.embeddings)} embeddings",
                  total=total)
    results: list = [None] * len(todo)
    embeddings: dict = {}
    for done, (handle, out) in enumerate(as_finished(pending), 1):
        what, key = handle.tag
        if what == "fit":
            algorithm, params = todo[key]
            results[key] = {"algorithm": algorithm, "params": params, **out}
            info = f"{algorithm} {', '.join(f'{k}={v:.3g}' for k, v in params.items() if isinstance(v, (int, float)))}"
        else:
            embeddings[key] = out
            info = f"{key} embedding {out['seconds']:.1f}s"
        display.advance("clustering", done, total, info)

    models, chosen = {}, {}
    for algorithm in ALGORITHMS:
        tried = [r for r in results if r["algorithm"] == algorithm]
        if not tried:
            continue
        best = best_candidate(tried, cfg.metric)
        if best is None:
            notes.append(f"{algorithm}: none of its {len(tried)} candidates found at least 2 clusters "
                         f"with at most half the rows as noise")
            continue
        chosen[algorithm] = best
        models[algorithm] = {"params": best["params"], **best["scores"], "train_time_s": round(best["seconds"], 3),
                             "search": [{"params": r["params"], "scores": r["scores"], "seconds": round(r["seconds"], 3)}
                                        for r in tried]}
    if not models:
        raise UserError(f"clustering: no candidate of {', '.join(cfg.algorithms)} found at least 2 clusters in "
                        f"{data.source}; try other clustering.algorithms or clustering.k")
    best_name = best_candidate([chosen[a] for a in models], cfg.metric)["algorithm"]
    best = chosen[best_name]
    display.finish("clustering", f"best {best_name} ({models[best_name]['n_clusters']} clusters), "
                                 f"{cfg.metric} {models[best_name][cfg.metric]:.4f}")
    state.stage_times["clustering"] = time.perf_counter() - started
    _write_outputs(state, best_name, best, chosen, models, embeddings, sample, notes)


def _write_outputs(state: RunState, best_name: str, best: dict, chosen: dict, models: dict, embeddings: dict,
                   sample: np.ndarray, notes: list[str]) -> None:
    from rayfit.cluster.storage import Location
    from rayfit.evaluation.cluster_report import ClusterContext, render_plots, write_report
    from rayfit.evaluation.clustering import dendrogram_linkage

    exp, data, display, run_dir = state.exp, state.prepared, state.display, state.run_dir
    X, labels = data.parts[ALL].X, data.parts[ALL].y
    started = time.perf_counter()
    display.start("report", "model, assignments, plots and report")
    model = ClusterModel(best_name, best["estimator"], X, best["assigned"])
    model_dir, partial = run_dir / MODEL_DIR, run_dir / f".{MODEL_DIR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save(partial)
    save_preprocessing(data, partial)
    write_manifest(partial)
    shutil.rmtree(model_dir, ignore_errors=True)
    partial.rename(model_dir)

    assignments = pd.DataFrame({"row": np.arange(len(X)), "cluster": best["assigned"]})
    for algorithm, result in chosen.items():
        assignments[algorithm] = result["assigned"]
    Location.of(run_dir / ASSIGNMENTS_FILE).write_bytes(assignments.to_csv(index=False).encode())

    dataset = {"rows": data.n_rows, "features": data.n_features, "labels": data.target,
               **({"label_classes": len(data.label_names)} if data.label_names else {})}
    described = {method: {"rows": len(sample), "seconds": round(e["seconds"], 3),
                          **({"explained_variance_ratio": [round(v, 6) for v in e["explained_variance_ratio"]]}
                             if "explained_variance_ratio" in e else {})} for method, e in embeddings.items()}
    metrics = {"task": "clustering", "primary_metric": exp.clustering.metric, "best_model": best_name,
               "dataset": dataset, "models": models, "embeddings": described,
               "selection": {"method": exp.clustering.metric, "rows_scored": len(sample)}}
    write_results(run_dir, metrics, best["params"])

    linkage = None
    if "agglomerative" in models:
        rows = sample[:DENDROGRAM_ROWS] if len(sample) > DENDROGRAM_ROWS else sample
        linkage = dendrogram_linkage(X[rows], models["agglomerative"]["params"]["linkage"])
    ctx = ClusterContext(
        name=exp.name, metric=exp.clustering.metric, best=best_name, dataset={"source": data.source, **dataset},
        models=models, assigned=best["assigned"], sample=sample, embeddings=embeddings, labels=labels,
        label_names=data.label_names, linkage=linkage, prep_log=data.log, notes=notes, config_yaml=to_yaml(exp),
        stage_times=state.stage_times, created=time.strftime("%Y-%m-%d %H:%M:%S"), artifacts=dict(ARTIFACTS))
    plots = render_plots(ctx, run_dir / "plots")
    state.stage_times["report"] = time.perf_counter() - started
    write_report(ctx, run_dir, plots)
    display.finish("report", f"{len(plots)} plots, report.html")


def _fit_and_score(algorithm, params, X, labels, sample, seed, threads):
    from rayfit.evaluation.clustering import cluster_scores, fit_candidate

    estimator, assigned, seconds = fit_candidate(algorithm, params, X, seed, threads)
    return {"estimator": estimator, "assigned": assigned, "seconds": seconds,
            "scores": cluster_scores(X, assigned, labels, sample)}


def _embed(method, X, sample, seed, threads):
    from rayfit.evaluation.clustering import embed

    return embed(method, X[sample], seed, threads)
