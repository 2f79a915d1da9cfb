"""The evaluation report: `report.md` and a self-contained `report.html` with the same content.

The report is first built as a list of blocks (heading, paragraph, list, table, image, code);
two small renderers turn that one list into Markdown and into HTML, so the two files cannot drift.
"""
from __future__ import annotations

import base64
import html
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from rayfit import metrics, units
from rayfit.metrics import is_missing, yardstick_note

from .context import ReportContext
from .plots import SEARCH_PLOTS, search_plot_name

MISSING = "–"
TOP_TRIALS = 10
TOP_FEATURES = 15
PLOT_TITLES = {
    "model_comparison": "Model comparison",
    "learning_curves": "Learning curves",
    "tuning_curves": "Tuning curves",
    "tuning_parameters": "Hyperparameters against validation loss",
    "confusion_matrix": "Confusion matrix",
    "roc_curve": "ROC curve",
    "pr_curve": "Precision-recall curve",
    "calibration": "Calibration curve",
    "feature_importance": "Feature importance",
    "predicted_vs_actual": "Predicted vs actual",
    "residuals": "Residuals",
}


def format_value(value: Any) -> str:
    """Numbers to 4 significant digits, integers as they are, None and NaN as a dash."""
    if is_missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_, str)):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    return str(value)


def format_seconds(seconds: Any) -> str:
    """A duration with its unit, to a sensible precision: 42 ms, 3.2 s, 95 s, 4 min 10 s."""
    return MISSING if is_missing(seconds) else units.format_seconds(seconds)


# ----------------------------------------------------------------------------------------------
# Blocks: what the report says, independent of the format it is written in.


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]
    highlight: Optional[int] = None  # index of the row to set apart (the best model)


@dataclass
class Image:
    title: str
    path: Path


@dataclass
class Code:
    text: str
    language: str = ""


Block = Union[Heading, Paragraph, Bullets, Table, Image, Code]


# ----------------------------------------------------------------------------------------------
# Sections, in report order. Each returns its blocks, or none when it has nothing to say.


def _title(ctx: ReportContext) -> list[Block]:
    blocks: list[Block] = [Heading(f"rayfit report: {ctx.name}", level=1)]
    led = ctx.selection.get("yardstick_led")
    if led:  # said before anything else: the exported model never beat the dummy on the choosing metric
        blocks.append(Paragraph(yardstick_note(led, ctx.best_model, ctx.task)))
    if ctx.created:
        blocks.append(Paragraph(f"Created {ctx.created}."))
    best = ctx.models.get(ctx.best_model, {})
    if best.get("selected_on") == "cv":
        cv = best["cv"].get(ctx.primary_metric, {})
        refit = best.get("refit", True)
        then = ("its fold models averaged (bagged)" if refit == "bagged" else
                "then refitted on both" if refit else "tested as trained on train")
        chosen = (f"chosen on {ctx.selection.get('folds', '?')}-fold cross-validation {ctx.primary_metric} "
                  f"{format_value(cv.get('mean'))} ± {format_value(cv.get('std'))} over train + validation, "
                  f"{then}")
    else:
        chosen = f"chosen on validation {ctx.primary_metric} {format_value(ctx.metric(ctx.best_model, 'val'))}"
    decision = ""
    if best.get("threshold") is not None:
        classes = ctx.class_names or []
        positive = f"P({classes[1]})" if len(classes) == 2 else "the second class's probability"
        decision = (f" It predicts the second class where {positive} is at least {best['threshold']:.2f}, a "
                    f"decision threshold tuned on out-of-fold predictions for {ctx.primary_metric}.")
    blocks.append(Paragraph(
        f"Best model: {ctx.best_model} ({best.get('framework', MISSING)}), "
        f"test {ctx.primary_metric} {format_value(ctx.metric(ctx.best_model, 'test'))} ({chosen}; {ctx.task})."
        + decision
    ))
    return blocks + _summary(ctx)


CLASSIC = ("sklearn", "xgboost", "lightgbm")  # frameworks of the classic-ML baselines


def _summary(ctx: ReportContext) -> list[Block]:
    """What one decides from, first: the best against the best baseline and the dummy, the data,
    what was done to it, how long it took, on what."""
    metric, facts = ctx.primary_metric, []
    test = lambda name: format_value(ctx.metric(name, "test"))  # noqa: E731
    baselines = [n for n, m in ctx.models.items() if m.get("framework") in CLASSIC and n not in ("dummy", ctx.best_model)
                 and not is_missing(ctx.metric(n, "test"))]
    line = f"{ctx.best_model}: test {metric} {test(ctx.best_model)}"
    if baselines:
        runner = metrics.best({n: ctx.metric(n, "test") for n in baselines}, metric)
        line += f"; the best other classic-ML model, {runner}: {test(runner)}"
    if "dummy" in ctx.models:
        line += f"; the dummy (always the most frequent class or the mean): {test('dummy')}"
    facts.append(line)
    data = ctx.dataset
    shape = f"{format_value(data.get('rows'))} rows, {format_value(data.get('features'))} features"
    if data.get("classes"):
        shape += f", {data['classes']} classes"
    splits = data.get("split_sizes") or {}
    if splits:
        shape += " (" + "/".join(str(n) for n in splits.values()) + " " + "/".join(splits) + ")"
    facts.append(f"data: {shape}")
    if ctx.prep_log:
        facts.append(f"preparation: {len(ctx.prep_log)} step{'s' if len(ctx.prep_log) > 1 else ''} "
                     f"(see Data preparation), e.g. {ctx.prep_log[0]}")
    if ctx.stage_times:
        facts.append(f"wall time: {format_seconds(sum(ctx.stage_times.values()))} until the report")
    if ctx.resources:
        facts.append(f"resources: {ctx.resources.get('cluster', MISSING)}, {format_value(ctx.resources.get('nodes'))} "
                     f"node(s)")
    return [Heading("Summary"), Bullets(facts), _leaderboard(ctx)]


def _leaderboard(ctx: ReportContext) -> Table:
    """Every model, best first by the score that chose among them: how it was chosen and tested,
    what trained it and where, how long."""
    metric = ctx.primary_metric
    names = metrics.rank_models(ctx.models, metric)
    rows = []
    for name in names:
        model = ctx.models[name]
        on, value, std = metrics.selection_score(model, metric)
        chosen_by = f"{format_value(value)}" + (f" ± {format_value(std)}" if std is not None else "")
        if model.get("out_of_reach"):  # behind the leader on validation: shown, never chosen
            chosen_by = f"{format_value((model.get('val') or {}).get(metric))}, out of reach"
        rows.append([name, model.get("framework", MISSING), f"{on} {chosen_by}", ctx.metric(name, "test"),
                     model.get("launch", "task" if model.get("framework") in CLASSIC else MISSING),
                     model.get("workers", 1), model.get("device", "cpu"), format_seconds(model.get("train_time_s"))])
    header = ["Model", "Framework", f"Chosen on ({metric})", f"Test {metric}", "Launch", "Workers", "Device", "Train time"]
    return Table(header, rows, names.index(ctx.best_model) if ctx.best_model in names else None)


def _dataset(ctx: ReportContext) -> list[Block]:
    data = ctx.dataset
    facts = [f"{key.replace('_', ' ')}: {format_value(data[key])}"
             for key in ("source", "test_file", "target", "rows", "features", "classes") if key in data]
    if ctx.class_names:
        facts.append(f"class names: {', '.join(map(str, ctx.class_names))}")
    blocks: list[Block] = [Heading("Dataset"), Bullets(facts)]
    splits = data.get("split_sizes") or {}
    if splits:
        total = sum(splits.values())
        rows = [[split, n, f"{100 * n / total:.1f}%" if total else MISSING] for split, n in splits.items()]
        blocks.append(Table(["Split", "Rows", "Share"], rows))
    return blocks


def _preparation(ctx: ReportContext) -> list[Block]:
    return [Heading("Data preparation"), Bullets(ctx.prep_log or ["No cleaning was needed."])]


def _metrics_table(ctx: ReportContext, split: str) -> Table:
    shown = ctx.metric_names
    header = ["Model", "Framework"] + [f"{m} {metrics.get(m).arrow}" for m in shown]
    if split == "test":
        header.append("Train time")
    rows, highlight = [], None
    for i, (name, model) in enumerate(ctx.models.items()):
        if name == ctx.best_model:
            highlight = i
        row = [f"{name} (best)" if name == ctx.best_model else name, model.get("framework", MISSING)]
        row += [model.get(split, {}).get(m) for m in shown]
        if split == "test":
            row.append(format_seconds(model.get("train_time_s")))
        rows.append(row)
    return Table(header, rows, highlight)


def _models(ctx: ReportContext, plots: dict[str, Path]) -> list[Block]:
    return [
        Heading("Models"),
        Paragraph("Test metrics (↑ higher is better, ↓ lower is better):"),
        _metrics_table(ctx, "test"),
        Paragraph("Validation metrics:"),
        _metrics_table(ctx, "val"),
        *_cross_validation(ctx),
        *_images(plots, "model_comparison"),
    ]


def _cross_validation(ctx: ReportContext) -> list[Block]:
    """Each cross-validated model's mean ± std per metric, beside its test score, and which score
    chose each model."""
    crossed = {name: model for name, model in ctx.models.items() if model.get("cv")}
    if not crossed:
        return [Paragraph("Models were chosen on the validation split (no cross-validation: "
                          "evaluation.cv is none, or the table is larger than cv: auto cross-validates).")]
    folds = ctx.selection.get("folds", "?")
    shown = ctx.metric_names
    header = ["Model"] + [f"CV {m} (mean ± std)" for m in shown] + [f"Test {ctx.primary_metric}"]
    rows, highlight = [], None
    for i, (name, model) in enumerate(crossed.items()):
        highlight = i if name == ctx.best_model else highlight
        cells = [f"{format_value(model['cv'][m]['mean'])} ± {format_value(model['cv'][m]['std'])}"
                 if m in model["cv"] else MISSING for m in shown]
        rows.append([name, *cells, model.get("test", {}).get(ctx.primary_metric)])
    on_validation = [name for name, model in ctx.models.items() if not model.get("cv")]
    why = ctx.selection.get("on_validation", {})
    said = " ".join(f"{name} was compared by {ctx.primary_metric} on the validation split"
                    f"{f' ({why[name]})' if name in why else ''}." for name in on_validation)
    folded = [name for name, model in crossed.items() if not model.get("refit", True)]
    trained_in_folds = (f"{', '.join(folded)} trained on each fold's rows (early-stopping on a 15% slice of them, "
                        f"tuned hyperparameters as chosen) and {'is' if len(folded) == 1 else 'are'} tested as trained "
                        f"on train." if folded else "")
    sentences = [f"Cross-validation: {folds} folds of train + validation ({ctx.selection.get('rows', '?')} rows), "
                 f"stratified for classification; each classic-ML model's test score is "
                 + ("that of its fold models averaged (bagged)." if ctx.selection.get("refit") == "bagged"
                    else "its refit on all of them."),
                 trained_in_folds, said, "The test split was used for no choice."]
    return [Paragraph(" ".join(s for s in sentences if s)),
            Table(header, rows, highlight)]


def _how_networks_ran(ctx: ReportContext) -> list[Block]:
    """Where each network trained and why there: launch, workers, device, and auto's figures."""
    rows = []
    for name, model in ctx.models.items():
        if not model.get("launch"):
            continue
        device = model.get("device", MISSING)
        rows.append([name, "Ray Train worker group" if model["launch"] == "ray_train" else "one Ray task",
                     model.get("workers", MISSING), device, model.get("gpus_per_worker", MISSING),
                     "yes" if model.get("amp") else "no", _short_nodes(model.get("nodes")),
                     model.get("launch_reason", MISSING)])
    if not rows and not ctx.resources:
        return []
    blocks: list[Block] = [Heading("How the networks ran")]
    if ctx.resources:
        per_node = ctx.resources.get("per_node") or []
        shape = (" (" + "; ".join(f"node {i + 1}: {n['cpus']:g} CPUs, {n['gpus']:g} GPUs" for i, n in enumerate(per_node))
                 + ")") if len(per_node) > 1 else ""
        blocks.append(Paragraph(f"Ray cluster: {ctx.resources.get('cluster', MISSING)}{shape}."))
        notes = ctx.resources.get("notes") or {}
        if notes:
            blocks.append(Bullets([f"{framework}: {note}" for framework, note in notes.items()]))
    if rows:
        blocks.append(Table(["Model", "Launch", "Workers", "Device", "GPUs per worker", "Mixed precision", "Nodes",
                             "Why"], rows))
    return blocks


def _short_nodes(nodes) -> str:
    """Ray node ids, shortened as Ray's own tools show them."""
    return ", ".join(node[:8] for node in nodes) if nodes else MISSING


def _learning(ctx: ReportContext, plots: dict[str, Path]) -> list[Block]:
    rows = []
    for name, records in ctx.histories.items():
        if not records:
            continue
        scored = [r for r in records if not is_missing(r.get("val_loss"))]
        best = min(scored, key=lambda r: r["val_loss"]) if scored else {}
        # Best on the last epoch: still improving when training ended.
        note = "may need more epochs" if best and best.get("epoch") == records[-1].get("epoch") else ""
        rows.append([name, len(records), best.get("val_loss"), best.get("epoch"), records[-1].get("train_loss"), note])
    if not rows:
        return []
    table = Table(["Model", "Epochs", "Best val loss", "At epoch", "Final train loss", "Note"], rows)
    blocks: list[Block] = [Heading("Learning curves")]
    if ctx.task == "regression":
        blocks.append(Paragraph("Losses are mean squared errors on the standardized target, (y - mean) / std "
                                "of the training split, the scale the networks learn on; validation and test "
                                "metrics above are in the target's own units."))
    return blocks + [table, *_images(plots, "learning_curves")]


def _tuning(ctx: ReportContext, plots: dict[str, Path]) -> list[Block]:
    if ctx.searches:
        blocks: list[Block] = []
        for i, (name, search) in enumerate(ctx.searches.items()):
            plot_names = [search_plot_name(plot, name, first=i == 0) for plot in SEARCH_PLOTS]
            blocks += _one_search(f"Tuning: {name}", search["best_params"], search["trials"], plots, plot_names,
                                  _search_setup(search))
        return blocks
    if not ctx.trials and not ctx.best_params:
        return []
    return _one_search("Tuning", ctx.best_params, ctx.trials, plots, list(SEARCH_PLOTS), None)


def _search_setup(search: dict) -> str:
    """How the search ran: its model, searcher, scheduler, trial mode and time."""
    parts = [f"Searched {search.get('model')} with {search.get('searcher', 'random')} proposals and "
             f"the {search.get('scheduler', 'asha')} scheduler"]
    if search.get("trial_mode"):
        parts.append(f"trials trained {search['trial_mode']} ({search.get('trial_mode_reason', '')})")
    if search.get("plan"):
        parts.append(search["plan"])
    if search.get("wall_time_s") is not None:
        parts.append(f"{search['wall_time_s']:.1f} s wall")
    return "; ".join(parts) + "."


def _one_search(title: str, best_params: dict, trials: list[dict], plots: dict[str, Path], plot_names: list[str],
                setup) -> list[Block]:
    blocks: list[Block] = [Heading(title)] + ([Paragraph(setup)] if setup else [])
    if best_params:
        blocks += [Paragraph("Best hyperparameters:"),
                   Table(["Parameter", "Value"], [[k, v] for k, v in best_params.items()])]
    if trials:
        blocks.append(Paragraph(_tuning_budget(trials)))
        blocks += [Paragraph(f"Top {min(TOP_TRIALS, len(trials))} trials by val loss:"), _trials_table(trials)]
    return blocks + _images(plots, *plot_names)


def _tuning_budget(trials: list[dict]) -> str:
    trained = sum(t.get("epochs") or 0 for t in trials)
    # The search's epoch limit, if the trials carry it; otherwise the longest trial stands in for it.
    limits = [t["max_epochs"] for t in trials if t.get("max_epochs")]
    max_epochs = max(limits) if limits else max((t.get("epochs") or 0 for t in trials), default=0)
    text = f"{len(trials)} trials; {trained} epochs trained"
    if not max_epochs:
        return text + "."
    budget = sum(t.get("max_epochs") or max_epochs for t in trials)
    text += f" of a {budget}-epoch budget ({len(trials)} trials × up to {max_epochs} epochs)"
    # each trial's unused epochs, by what ended it: the scheduler's cuts, the trial's own patience
    saved: dict[str, int] = {}
    for t in trials:
        left = (t.get("max_epochs") or max_epochs) - (t.get("epochs") or 0)
        if left > 0:
            saved[t.get("status", "")] = saved.get(t.get("status", ""), 0) + left
    ended = {status: sum(1 for t in trials if t.get("status") == status) for status in
             ("completed", "stopped by scheduler", "early stopping", "failed")}
    if any(ended.values()):
        text += "; " + ", ".join(f"{n} {status}" for status, n in ended.items() if n)
    by = {"stopped by scheduler": "the scheduler's stops", "early stopping": "early stopping (patience)",
          "failed": "failures"}
    spared = [f"{by[status]} spared {100 * n / budget:.0f}%" for status, n in saved.items() if status in by and n]
    return text + (f"; {', '.join(spared)} of it" if spared else "") + "."


def _by_val_loss(trial: dict) -> tuple[bool, float]:
    missing = is_missing(trial.get("val_loss"))
    return missing, 0.0 if missing else trial["val_loss"]


def _trials_table(trials: list[dict]) -> Table:
    ranked = sorted(trials, key=_by_val_loss)[:TOP_TRIALS]
    params = list(dict.fromkeys(key for t in ranked for key in t.get("params", {})))
    with_accuracy = any("val_accuracy" in t for t in ranked)
    header = ["Trial", "Status", "Epochs", "Val loss"] + (["Val accuracy"] if with_accuracy else []) + params
    rows = []
    for t in ranked:
        row = [t.get("trial_id"), t.get("status"), t.get("epochs"), t.get("val_loss")]
        row += [t.get("val_accuracy")] if with_accuracy else []
        rows.append(row + [t.get("params", {}).get(p) for p in params])
    return Table(header, rows, highlight=0)


def _diagnostics(ctx: ReportContext, plots: dict[str, Path]) -> list[Block]:
    images = _images(plots, "confusion_matrix", "roc_curve", "pr_curve", "calibration", "predicted_vs_actual",
                     "residuals")
    return [Heading(f"Best model on test: {ctx.best_model}"), *images] if images else []


def _importance(ctx: ReportContext, plots: dict[str, Path]) -> list[Block]:
    if not ctx.importance:
        return []
    top = sorted(ctx.importance, key=lambda item: item[1], reverse=True)[:TOP_FEATURES]
    rows = [[rank, feature, mean, std] for rank, (feature, mean, std) in enumerate(top, start=1)]
    return [
        Heading("Feature importance"),
        Paragraph(f"Permutation importance of {ctx.best_model}: the drop in {ctx.primary_metric} "
                  f"when one feature is shuffled (top {len(top)} of {len(ctx.importance)}){_sampled(ctx)}."),
        Table(["Rank", "Feature", f"Mean drop in {ctx.primary_metric}", "Std"], rows),
        *_images(plots, "feature_importance"),
        *_every_models_importance(ctx),
        *_native_importance(ctx),
    ]


def _sampled(ctx: ReportContext) -> str:
    """What permutation importance was measured on, as metrics.json records it."""
    entry = ctx.models.get(ctx.best_model, {}).get("permutation_importance") or {}
    if "rows" not in entry:  # a run from before importance was sampled
        return ""
    sample = (f"all {entry['rows']:,} test rows" if entry["rows"] >= entry["of_rows"]
              else f"a sample of {entry['rows']:,} of the {entry['of_rows']:,} test rows")
    return f", on {sample}, {entry['repeats']} shuffles per feature"


def _every_models_importance(ctx: ReportContext) -> list[Block]:
    """Each model's permutation importance where it was measured, by the same function on the same rows."""
    rows = [[name, ", ".join(f"{feature} ({format_value(mean)})" for feature, mean, _ in
                             entry["permutation_importance"]["top"][:5])]
            for name, entry in ctx.models.items() if (entry.get("permutation_importance") or {}).get("top")]
    if len(rows) < 2:
        return []
    skipped = [name for name, entry in ctx.models.items()
               if "permutation_importance" in entry and entry["permutation_importance"] is None]
    rest = (f" The other {len(skipped)} model(s) show their native importance below, where they have one."
            if skipped else "")
    return [Paragraph(f"Permutation importance of the {len(rows)} best models on the same test rows: the features "
                      f"whose shuffling costs most {ctx.primary_metric} (top 5, mean drop).{rest}"),
            Table(["Model", "Features"], rows)]


def _native_importance(ctx: ReportContext) -> list[Block]:
    """What each model itself learned to rely on, beside the best model's permutation importance."""
    rows = [[name, entry["native_importance"]["kind"],
             ", ".join(f"{feature} ({100 * share:.0f}%)" for feature, share in entry["native_importance"]["top"][:5])]
            for name, entry in ctx.models.items() if entry.get("native_importance")]
    if not rows:
        return []
    return [Paragraph("Native importance, where a model has one: trees' impurity decrease, boosters' gain, "
                      "linear models' absolute coefficients on standardized features; each feature's share "
                      "(top 5):"),
            Table(["Model", "Measure", "Features"], rows)]


def _timings(ctx: ReportContext) -> list[Block]:
    if not ctx.stage_times:
        return []
    total = sum(ctx.stage_times.values())
    rows = [[stage, format_seconds(seconds), f"{100 * seconds / total:.0f}%" if total else MISSING]
            for stage, seconds in ctx.stage_times.items()]
    rows.append(["total", format_seconds(total), "100%" if total else MISSING])
    return [Heading("Stage timings"), Table(["Stage", "Time", "Share"], rows), *_time_limit(ctx)]


def _time_limit(ctx: ReportContext) -> list[Block]:
    """A limited run: what each training stage was given and took, and what the limit skipped."""
    limit = ctx.time_limit
    if not limit:
        return []
    before = f", {format_seconds(limit['used_before_s'])} of it by earlier commands" if limit.get("used_before_s") else ""
    blocks: list[Block] = [
        Heading("Time limit"),
        Paragraph(f"A hard limit of {format_seconds(limit['limit_s'])} for the whole command, its start to its exit"
                  f"{before}; {format_seconds(limit.get('until_report_s'))} had passed when the evaluation ended, "
                  f"and {format_seconds(limit.get('reserve_s'))} were kept for the evaluation, the report and the "
                  f"exit. Each training stage was given its share of the time left when it started:"),
        Table(["Stage", "Budget", "Actual"], [[stage, format_seconds(entry.get("budget_s")),
                                              format_seconds(entry.get("actual_s"))]
                                             for stage, entry in limit.get("stages", {}).items()])]
    if limit.get("skipped"):
        blocks.append(Bullets([f"skipped: {what}: {why}" for what, why in limit["skipped"].items()]))
    return blocks


def _artifacts(ctx: ReportContext) -> list[Block]:
    if not ctx.artifacts:
        return []
    return [Heading("Artifacts"), Bullets([f"{label}: {path}" for label, path in ctx.artifacts.items()])]


def _reproducibility(ctx: ReportContext) -> list[Block]:
    """What to rerun it with: the seed, the versions, the commit; the configuration follows."""
    env = ctx.environment
    if not env and ctx.seed is None:
        return []
    facts = []
    if ctx.seed is not None:
        facts.append(f"seed: {ctx.seed} (the split, every model and the search)")
    if env.get("packages"):
        facts.append("packages: " + ", ".join(f"{name} {version}" for name, version in env["packages"].items()))
    if env.get("python"):
        facts.append(f"Python {env['python']} on {env.get('platform', MISSING)}")
    if env.get("git_commit"):
        facts.append(f"git commit of the working directory: {env['git_commit']}")
    if ctx.resources:
        facts.append(f"Ray cluster: {ctx.resources.get('cluster', MISSING)}")
    return [Heading("Reproducibility"), Bullets(facts)]


def _config(ctx: ReportContext) -> list[Block]:
    if not ctx.config_yaml:
        return []
    return [Heading("Resolved configuration"), Code(ctx.config_yaml, "yaml")]


def _plot_title(name: str) -> str:
    """A plot's title; one drawn per search (<plot>_<search>) names its search."""
    if name in PLOT_TITLES:
        return PLOT_TITLES[name]
    for plot in SEARCH_PLOTS:
        if name.startswith(plot + "_"):
            return f"{PLOT_TITLES[plot]} ({name.removeprefix(plot + '_')})"
    return name


def _images(plots: dict[str, Path], *names: str) -> list[Block]:
    return [Image(_plot_title(name), Path(plots[name])) for name in names if name in plots]


def build_report(ctx: ReportContext, plots: dict[str, Path]) -> list[Block]:
    """The report as blocks; any plot not placed in a section is appended at the end."""
    blocks = [
        *_title(ctx), *_dataset(ctx), *_preparation(ctx), *_models(ctx, plots), *_how_networks_ran(ctx),
        *_learning(ctx, plots),
        *_tuning(ctx, plots), *_diagnostics(ctx, plots), *_importance(ctx, plots),
    ]
    placed = {b.path for b in blocks if isinstance(b, Image)}
    extra = [name for name, path in plots.items() if Path(path) not in placed]
    if extra:
        blocks += [Heading("Other plots"), *_images(plots, *extra)]
    return blocks + _timings(ctx) + _artifacts(ctx) + _reproducibility(ctx) + _config(ctx)


# ----------------------------------------------------------------------------------------------
# Markdown


def _md_text(text: str) -> str:
    # Markdown viewers render inline HTML; a backslash shows < and > as themselves.
    return text.replace("<", "\\<").replace(">", "\\>")


def _md_cell(value: Any) -> str:
    return _md_text(format_value(value)).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], run_dir: Path) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Paragraph):
            parts.append(_md_text(block.text))
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {_md_text(item)}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(map(_md_cell, block.header)) + " |",
                     "|" + "---|" * len(block.header)]
            for i, row in enumerate(block.rows):
                cells = [_md_cell(v) for v in row]
                if i == block.highlight:
                    cells = [f"**{c}**" for c in cells]
                lines.append("| " + " | ".join(cells) + " |")
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{_md_text(block.title)}]({Path(os.path.relpath(block.path, run_dir)).as_posix()})")
        elif isinstance(block, Code):
            # A fence longer than any backtick run inside, so the config cannot close it early.
            fence = "`" * max(3, _longest_backtick_run(block.text) + 1)
            parts.append(f"{fence}{block.language}\n{block.text.rstrip()}\n{fence}")
    return "\n\n".join(parts) + "\n"


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest


# ----------------------------------------------------------------------------------------------
# HTML: one file, no external references. Every piece of text goes through html.escape.

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #3182bd; padding-bottom: .2em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; }
th { background: #f0f4f8; }
tr.highlight td { background: #fff3e0; font-weight: 600; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: .88em; }
.table-wrap { overflow-x: auto; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10pt; }
  table { font-size: 7.5pt; }
  th, td { padding: .15em .3em; }
  .table-wrap { overflow: visible; }
  figure, tr, li { break-inside: avoid; }
  h1, h2, h3 { break-after: avoid; }
  figure img { max-height: 45vh; }
  pre { white-space: pre-wrap; overflow: visible; }
}
"""


def _esc(value: Any) -> str:
    return html.escape(format_value(value))


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in table.header)
    rows = []
    for i, row in enumerate(table.rows):
        attr = ' class="highlight"' if i == table.highlight else ""
        rows.append(f"<tr{attr}>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>")
    return (f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows)
            + "\n</tbody>\n</table></div>")


def _html_image(image: Image) -> str:
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    title = html.escape(image.title)
    return (f'<figure><img alt="{title}" src="data:image/png;base64,{data}">'
            f"<figcaption>{title}</figcaption></figure>")


def to_html(blocks: list[Block], title: str) -> str:
    body = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_esc(block.text)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>\n" + "\n".join(f"<li>{_esc(i)}</li>" for i in block.items) + "\n</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Image):
            body.append(_html_image(block))
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_report(ctx: ReportContext, run_dir: Path, plots: dict[str, Path]) -> None:
    """Write `run_dir/report.md` (plots linked as plots/<name>.png) and a self-contained `run_dir/report.html`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    from rayfit.cluster.storage import Location

    blocks = build_report(ctx, plots)
    # Whole or not at all (written beside, then renamed), report.html last: its presence says the
    # run's results are all there.
    Location.of(run_dir / "report.md").write_bytes(to_markdown(blocks, run_dir).encode("utf-8"))
    Location.of(run_dir / "report.html").write_bytes(to_html(blocks, f"rayfit report: {ctx.name}").encode("utf-8"))
