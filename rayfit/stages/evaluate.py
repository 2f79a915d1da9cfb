"""Stage: evaluate. Every model is scored on the same validation and test splits; the best on
validation by the primary metric is saved with the preprocessing as the run's model, and the
scores are written to metrics.json and best_params.yaml (evaluation/results.py)."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from rayfit.data.preprocessing import save_preprocessing
from rayfit.evaluation.fitted import FittedModel
from rayfit.evaluation.manifest import write_manifest
from rayfit.evaluation.metrics import is_better, score_model
from rayfit.evaluation.results import dataset_entry, metrics_document, model_entry, write_results
from rayfit.stages.state import RunState


@dataclass
class Evaluation:
    scores: dict[str, dict]  # metrics.json's `models`
    best: str  # the best model's name
    best_model: FittedModel
    importance: list  # (feature, mean drop, std) of the best model, most important first
    metrics: dict  # the metrics.json document
    best_params: dict  # best_params.yaml


def evaluate(state: RunState) -> Evaluation:
    from rayfit.evaluation.importance import permutation_importance

    exp, prepared, display, metric = state.exp, state.prepared, state.display, state.metric
    started = time.perf_counter()
    display.start("evaluate", "evaluate (test split)", total=len(state.trained))
    scores: dict[str, dict] = {}
    for i, (name, trained) in enumerate(state.trained.items(), 1):
        test = score_model(trained.model, prepared.X_test, prepared.y_test, prepared.n_classes)
        val = score_model(trained.model, prepared.X_val, prepared.y_val, prepared.n_classes)
        scores[name] = model_entry(trained.framework, test, val, trained.train_time_s, trained.launch, trained.run_info)
        display.advance("evaluate", i, len(state.trained), name, echo=False)
    best = best_on_validation(scores, metric)
    best_model = state.trained[best].model
    importance = []  # a pixel's importance says little; images get none
    if prepared.kind != "image":
        importance = permutation_importance(best_model, prepared.X_test, prepared.y_test, prepared.feature_names,
                                            metric, prepared.n_classes, exp.report.importance_repeats, exp.seed)

    # model/ appears whole: written beside it, then renamed (a rerun after a stop replaces a partial one)
    model_dir, partial = state.run_dir / "model", state.run_dir / ".model.partial"
    shutil.rmtree(partial, ignore_errors=True)
    best_model.save(partial)
    save_preprocessing(prepared, partial)
    write_manifest(partial)
    shutil.rmtree(model_dir, ignore_errors=True)
    partial.rename(model_dir)

    metrics = metrics_document(
        prepared.task, metric, best, dataset_entry(prepared.task, prepared.n_rows, prepared.n_features, prepared.n_classes),
        scores, resources=state.plan.describe() if state.plan is not None else None, searches=state.searches)
    best_params = state.search["best_params"] if state.search is not None else {}
    write_results(state.run_dir, metrics, best_params)
    display.finish("evaluate", f"best {best}: val {metric} {scores[best]['val'][metric]:.4f}, "
                               f"test {metric} {scores[best]['test'][metric]:.4f}")
    state.stage_times["evaluate"] = time.perf_counter() - started
    return Evaluation(scores, best, best_model, importance, metrics, best_params)


def best_on_validation(scores: dict[str, dict], metric: str) -> str:
    """The model with the best validation `metric`; the first one seen wins a tie."""
    best = None
    for name, entry in scores.items():
        if best is None or is_better(metric, entry["val"][metric], scores[best]["val"][metric]):
            best = name
    return best
