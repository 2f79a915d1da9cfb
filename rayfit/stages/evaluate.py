"""Stage: evaluate. Every model is scored on the same validation and test splits; the best by the
primary metric, on cross-validation where the run cross-validated (stages/cross_validate.py) and on
validation otherwise, is saved with the preprocessing as the run's model, and the scores are
written to metrics.json and best_params.yaml (evaluation/results.py)."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass

from rayfit.data.preprocessing import decode_classes, save_preprocessing
from rayfit.evaluation.fitted import MODEL_DIR, OTHER_MODELS, ArrayModel
from rayfit.evaluation.export import export_extras
from rayfit.evaluation.manifest import write_manifest
from rayfit.metrics import choose_model, rank_models, score_model, selection_score, yardstick_note
from rayfit.evaluation.predictions import prediction_frame
from rayfit.evaluation.results import TEST_PREDICTIONS, dataset_entry, metrics_document, model_entry, selection_entry, write_results
from rayfit.stages.state import RunState
from rayfit.frameworks import is_network_framework


@dataclass
class Evaluation:
    scores: dict[str, dict]  # metrics.json's `models`
    best: str  # the best model's name
    best_model: ArrayModel
    importance: list  # (feature, mean drop, std) of the best model, most important first
    metrics: dict  # the metrics.json document
    best_params: dict  # best_params.yaml


def evaluate(state: RunState) -> Evaluation:
    from rayfit.evaluation.importance import native_importance

    prepared, display, metric = state.prepared, state.display, state.metric
    started = time.perf_counter()
    display.start("evaluate", "evaluate (test split)", total=len(state.trained))
    scores: dict[str, dict] = {}
    for i, (name, trained) in enumerate(state.trained.items(), 1):
        # a cross-validated model is tested as refitted on train + validation; its validation
        # score stays the train-only fit's (the refit has seen those rows)
        tested = state.refitted.get(name, trained.model)
        test = score_model(tested, prepared.X_test, prepared.y_test, prepared.n_classes)
        val = score_model(trained.model, prepared.X_val, prepared.y_val, prepared.n_classes)
        scores[name] = model_entry(trained.framework, test, val, trained.train_time_s, trained.launch, trained.run_info,
                                   cv=state.cv.get(name), native_importance=native_importance(tested, prepared.feature_names),
                                   refit=_refit(state, trained.framework))
        if name in state.out_of_reach:
            scores[name]["out_of_reach"] = True
        if tested.threshold is not None:  # tuned on out-of-fold predictions (stages/cross_validate.py)
            scores[name]["threshold"] = tested.threshold
        display.advance("evaluate", i, len(state.trained), name, echo=False)
    best, yardstick_led = choose_model(scores, metric, prepared.task)
    if yardstick_led:
        display.say(f"evaluate: {yardstick_note(yardstick_led, best, prepared.task)}")
    best_model = state.refitted.get(best, state.trained[best].model)
    if prepared.kind != "image":  # a pixel's importance says little; images get none
        # the exported model first (where the dummy led, it is not the ranking's first)
        _importance_entries(state, scores, [best] + [n for n in rank_models(scores, metric) if n != best])
    # the best model's, as metrics.json keeps it: the report now and `rayfit report` later show the same
    importance = [tuple(row) for row in (scores[best].get("permutation_importance") or {}).get("top", [])]

    # model/ appears whole: written beside it, then renamed (a rerun after a stop replaces a partial one)
    model_dir, partial = state.run_dir / MODEL_DIR, state.run_dir / f".{MODEL_DIR}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    if state.exp.export.models == "all":  # every other model, each a model directory of its own
        display.start("export", "export every model", total=len(state.trained) - 1)
        others = [name for name in state.trained if name != best]
        for i, name in enumerate(others, 1):
            write_model_dir(state.refitted.get(name, state.trained[name].model), prepared,
                            partial / OTHER_MODELS / name)
            display.advance("export", i, len(others), name, echo=False)
        display.finish("export", f"{len(others)} models under model/{OTHER_MODELS}/")
    write_model_dir(best_model, prepared, partial)  # its manifest covers the others' files too
    write_test_predictions(best_model, prepared, state.run_dir / TEST_PREDICTIONS)
    shutil.rmtree(model_dir, ignore_errors=True)
    partial.rename(model_dir)

    metrics = metrics_document(
        prepared.task, metric, best, dataset_entry(prepared.task, prepared.n_rows, prepared.n_features, prepared.n_classes,
                                              prepared.split.test_file),
        scores, resources=state.plan.describe() if state.plan is not None else None, searches=state.searches,
        # cv only when some model was cross-validated (a run of networks alone chose on validation)
        selection=selection_entry(state.cv_folds if state.cv else None, len(prepared.y_train) + len(prepared.y_val),
                                  {n: why for n, why in state.cv_left_out.items() if n not in state.cv},
                                  state.exp.evaluation.refit),
        yardstick_led=yardstick_led)
    state.stage_times["evaluate"] = time.perf_counter() - started
    metrics["timings_s"] = {stage: round(seconds, 3) for stage, seconds in state.stage_times.items()}
    if state.budget is not None:
        metrics["time_limit"] = state.budget.entry()
    best_params = state.search["best_params"] if state.search is not None else {}
    write_results(state.run_dir, metrics, best_params)
    on, chosen_by, _ = selection_score(scores[best], metric)
    display.finish("evaluate", f"best {best}: {on} {metric} {chosen_by:.4f}, test {metric} {scores[best]['test'][metric]:.4f}")
    return Evaluation(scores, best, best_model, importance, metrics, best_params)


def _refit(state: RunState, framework: str):
    """metrics.json's `refit` of a cross-validated model: True, refitted on train + validation;
    "bagged", its fold models averaged; False, a network tested as trained on train."""
    if is_network_framework(framework):
        return False
    return "bagged" if state.exp.evaluation.refit == "bagged" and framework != "ensemble" else True


def write_test_predictions(model: ArrayModel, prepared, path) -> None:
    """The best model's test-split predictions, which the report's plots are drawn from, beside each
    row's number in the source file (in the test file, for a run given one): `rayfit predict` on
    those raw rows gives the same answers."""
    if prepared.test_rows is None:  # images, sequences, streamed tables: no source row numbers
        return
    frame = prediction_frame(model, prepared.X_test, prepared.class_names)
    frame.insert(0, "actual", decode_classes(prepared.class_names, prepared.y_test))
    frame.insert(0, "row", prepared.test_rows)
    frame.to_csv(path, index=False)


def write_model_dir(model: ArrayModel, prepared, directory) -> None:
    """A complete model directory: the model, its fitted preprocessing, the exports (TorchScript,
    ONNX) with README.md, and last the manifest of every file."""
    model.save(directory)
    save_preprocessing(prepared, directory)
    export_extras(model, directory, prepared)
    write_manifest(directory)


def _importance_entries(state: RunState, scores: dict[str, dict], ranked: list[str]) -> None:
    """Permutation importance of the best `report.importance_models` models (best first) on a
    sample of at most `report.importance_rows` test rows, into their metrics.json entries: every
    feature, most important first (what `rayfit report` redraws the best model's from). The other
    models' entries say null, and why."""
    from rayfit.evaluation.importance import sample_rows

    settings, prepared = state.exp.report, state.prepared
    chosen = ranked[:settings.importance_models]
    rows = sample_rows(len(prepared.y_test), settings.importance_rows, state.exp.seed)
    found = _importance(state, {name: state.refitted.get(name, state.trained[name].model) for name in chosen},
                        prepared.X_test[rows], prepared.y_test[rows]) if chosen else {}
    for name in scores:
        if name in found:
            scores[name]["permutation_importance"] = {
                "top": [[feature, round(mean, 6), round(std, 6)] for feature, mean, std in found[name]],
                "rows": len(rows), "of_rows": len(prepared.y_test), "repeats": settings.importance_repeats}
        else:
            scores[name]["permutation_importance"] = None
            scores[name]["permutation_importance_note"] = (
                f"measured for the {settings.importance_models} best models only (report.importance_models); "
                f"native importance where the model has one")


def _importance(state: RunState, models: dict, X, y) -> dict[str, list]:
    """Permutation importance of `models` on these test rows: in parallel Ray tasks, or here for a
    small sample (importance_in_process) of models held here (a network is held by its
    framework's workers: its importance is computed there)."""
    from rayfit.evaluation.importance import importance_here, importance_in_process, start_importance_on_ray

    prepared, display = state.prepared, state.display
    display.start("importance", f"permutation importance on {len(y):,} test rows", total=len(models))
    small = importance_in_process(X)
    here = {name: model for name, model in models.items() if small and model.in_process}
    found, total = {}, len(models)

    def done(name, *_):
        found[name] = None
        display.advance("importance", len(found), total, name, echo=False)

    common = (X, y, prepared.feature_names, state.metric, prepared.n_classes, state.exp.report.importance_repeats,
              state.exp.seed)
    elsewhere = {name: model for name, model in models.items() if name not in here}
    computed = start_importance_on_ray(elsewhere, *common, on_done=done) if elsewhere else None
    results = importance_here(here, *common, on_done=done) if here else {}
    if computed is not None:
        results.update(computed())
    display.finish("importance", f"{len(results)} models")
    return {name: results[name] for name in models}
