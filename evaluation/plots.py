"""The report's figures: one registry entry per PNG.

Each entry takes the context and a path, draws one figure there and returns True, or returns
False and writes nothing when the figure does not apply (no histories, a regression task, ...).

Figures are built with `matplotlib.figure.Figure`, not pyplot: nothing is registered in pyplot's
global figure list, so nothing has to be closed, and saving a PNG always goes through Agg, whatever
backend the calling process (a notebook, a desktop session) has chosen.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, PredictionErrorDisplay, RocCurveDisplay

from .context import ReportContext, higher_is_better, is_missing

DPI = 110
VAL_COLOR, TEST_COLOR, BEST_COLOR = "#9ecae1", "#3182bd", "#fdd49e"
TOP_FEATURES = 20  # more bars than this stop being readable at report width
MAX_SCATTER_POINTS = 5000  # beyond this a scatter is a blot and the PNG grows for nothing


def _save(fig: Figure, path: Path) -> bool:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return True


def _value_or_nan(value) -> float:
    return float("nan") if is_missing(value) else float(value)


def model_comparison(ctx: ReportContext, path: Path) -> bool:
    metric = ctx.primary_metric
    names = [m for m in ctx.models if not (is_missing(ctx.metric(m, "val")) and is_missing(ctx.metric(m, "test")))]
    if not names:
        return False
    # Best first, ranked the way the model was chosen: on validation.
    sign = -1 if higher_is_better(metric) else 1
    names.sort(key=lambda m: (is_missing(ctx.metric(m, "val")), sign * _value_or_nan(ctx.metric(m, "val"))))

    fig = Figure(figsize=(7, 1.2 + 0.55 * len(names)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    height = 0.38
    for offset, split, color in ((-height / 2, "val", VAL_COLOR), (height / 2, "test", TEST_COLOR)):
        values = [_value_or_nan(ctx.metric(m, split)) for m in names]
        bars = ax.barh(y + offset, np.nan_to_num(values), height, color=color, label=split)
        ax.bar_label(bars, labels=["–" if np.isnan(v) else f"{v:.4g}" for v in values], padding=3, fontsize=8)
    if ctx.best_model in names:
        best = names.index(ctx.best_model)
        ax.axhspan(best - 0.5, best + 0.5, color=BEST_COLOR, zorder=0, label="best model")
    ax.set_yticks(y, names)
    for label in ax.get_yticklabels():
        if label.get_text() == ctx.best_model:
            label.set_fontweight("bold")
    ax.invert_yaxis()
    ax.margins(x=0.15)  # room for the value labels
    direction = "higher" if higher_is_better(metric) else "lower"
    ax.set_xlabel(f"{metric} ({direction} is better)")
    ax.set_title(f"Models by {metric}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # outside: bars fill the axes
    return _save(fig, path)


def learning_curves(ctx: ReportContext, path: Path) -> bool:
    histories = {name: records for name, records in ctx.histories.items() if records}
    if not histories:
        return False
    fig = Figure(figsize=(5 * len(histories), 3.8))
    axes = fig.subplots(1, len(histories), squeeze=False)[0]
    for ax, (name, records) in zip(axes, histories.items()):
        epochs = [r["epoch"] for r in records]
        for key in ("train_loss", "val_loss"):
            ax.plot(epochs, [_value_or_nan(r.get(key)) for r in records], marker=".", label=key)
        val = np.array([_value_or_nan(r.get("val_loss")) for r in records])
        if not np.all(np.isnan(val)):
            best = int(np.nanargmin(val))
            ax.axvline(epochs[best], color="grey", linestyle=":", label=f"best val (epoch {epochs[best]})")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    fig.suptitle("Learning curves")
    return _save(fig, path)


def tuning_curves(ctx: ReportContext, path: Path) -> bool:
    trials = [t for t in ctx.trials if t.get("history")]
    if not trials:
        return False
    best = min(trials, key=lambda t: np.inf if is_missing(t.get("val_loss")) else t["val_loss"])
    longest = max(len(t["history"]) for t in trials)
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for trial in trials:
        epochs = [h["epoch"] for h in trial["history"]]
        losses = [_value_or_nan(h.get("val_loss")) for h in trial["history"]]
        is_best = trial is best
        line, = ax.plot(epochs, losses, linewidth=2.5 if is_best else 1, alpha=1 if is_best else 0.7,
                        label=f"{trial['trial_id']}{' (best)' if is_best else ''}")
        # An early-stopped trial ends before the longest one; the cross marks where the scheduler cut it.
        if len(epochs) < longest:
            ax.plot(epochs[-1], losses[-1], "x", color=line.get_color(), markersize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val loss")
    ax.set_title(f"Tuning: validation loss of {len(trials)} trials (x: stopped early)")
    if len(trials) <= 12:
        ax.legend(fontsize=7, ncols=2)
    return _save(fig, path)


def tuning_parameters(ctx: ReportContext, path: Path) -> bool:
    """Each hyperparameter against the trial's best val loss: which settings mattered."""
    trials = [t for t in ctx.trials if t.get("params") and not is_missing(t.get("val_loss"))]
    names = sorted({name for t in trials for name in t["params"]})
    if len(trials) < 2 or not names:
        return False
    fig = Figure(figsize=(3.6 * len(names), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    losses = [t["val_loss"] for t in trials]
    for ax, name in zip(axes, names):
        values = [t["params"].get(name) for t in trials]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            ax.scatter(values, losses, s=18, alpha=0.8)
            positive = all(v > 0 for v in values)
            if positive and max(values) / min(values) > 50:
                ax.set_xscale("log")  # a log-uniform dimension spreads over decades
        else:
            labels = sorted({str(v) for v in values})
            ax.scatter([labels.index(str(v)) for v in values], losses, s=18, alpha=0.8)
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
        ax.set_xlabel(name)
    axes[0].set_ylabel("best val loss")
    fig.suptitle(f"Hyperparameters against validation loss ({len(trials)} trials)")
    return _save(fig, path)


def _class_count(ctx: ReportContext) -> int:
    if ctx.class_names:
        return len(ctx.class_names)
    if ctx.proba is not None:
        return ctx.proba.shape[1]
    return int(max(np.max(ctx.y_test), np.max(ctx.y_pred))) + 1


def confusion_matrix(ctx: ReportContext, path: Path) -> bool:
    if not ctx.is_classification or len(ctx.y_test) == 0:
        return False
    k = _class_count(ctx)
    fig = Figure(figsize=(max(4.5, 0.6 * k + 2), max(4, 0.6 * k + 1.5)))
    ax = fig.add_subplot()
    ConfusionMatrixDisplay.from_predictions(
        ctx.y_test, ctx.y_pred, labels=list(range(k)), display_labels=ctx.class_names or list(range(k)),
        values_format="d", cmap="Blues", colorbar=False, ax=ax,
        xticks_rotation="vertical" if k > 6 else "horizontal",
    )
    ax.set_title(f"Confusion matrix: {ctx.best_model} (test)")
    return _save(fig, path)


def roc_curve(ctx: ReportContext, path: Path) -> bool:
    binary = ctx.is_classification and ctx.proba is not None and ctx.proba.ndim == 2 and ctx.proba.shape[1] == 2
    # With one class absent from the test split the curve is undefined.
    if not binary or len(np.unique(ctx.y_test)) < 2:
        return False
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    RocCurveDisplay.from_predictions(ctx.y_test, ctx.proba[:, 1], pos_label=1, name=ctx.best_model,
                                     plot_chance_level=True, ax=ax)
    positive = ctx.class_names[1] if ctx.class_names else "1"
    ax.set_title(f"ROC curve (test, positive class: {positive})")
    return _save(fig, path)


def feature_importance(ctx: ReportContext, path: Path) -> bool:
    if not ctx.importance:
        return False
    top = sorted(ctx.importance, key=lambda item: item[1], reverse=True)[:TOP_FEATURES]
    features = [feature for feature, _, _ in top]
    fig = Figure(figsize=(7, 1.2 + 0.32 * len(top)))
    ax = fig.add_subplot()
    ax.barh(features, [mean for _, mean, _ in top], xerr=[std for _, _, std in top],
            color=TEST_COLOR, ecolor="black", capsize=3)
    ax.invert_yaxis()
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel(f"mean drop in {ctx.primary_metric} when shuffled (± std)")
    ax.set_title(f"Permutation importance: {ctx.best_model} (top {len(top)})")
    return _save(fig, path)


def predicted_vs_actual(ctx: ReportContext, path: Path) -> bool:
    if ctx.is_classification or len(ctx.y_test) == 0:
        return False
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot()
    PredictionErrorDisplay.from_predictions(
        ctx.y_test, ctx.y_pred, kind="actual_vs_predicted", subsample=MAX_SCATTER_POINTS, random_state=0,
        scatter_kwargs={"alpha": 0.5, "s": 12}, ax=ax,
    )
    ax.set_title(f"Predicted vs actual: {ctx.best_model} (test)")
    return _save(fig, path)


def residuals(ctx: ReportContext, path: Path) -> bool:
    if ctx.is_classification or len(ctx.y_test) == 0:
        return False
    fig = Figure(figsize=(10, 4.2))
    scatter_ax, hist_ax = fig.subplots(1, 2)
    PredictionErrorDisplay.from_predictions(
        ctx.y_test, ctx.y_pred, kind="residual_vs_predicted", subsample=MAX_SCATTER_POINTS, random_state=0,
        scatter_kwargs={"alpha": 0.5, "s": 12}, ax=scatter_ax,
    )
    scatter_ax.set_title("Residual vs predicted")
    hist_ax.hist(np.asarray(ctx.y_test) - np.asarray(ctx.y_pred), bins=30, color=TEST_COLOR)
    hist_ax.set_xlabel("residual (actual - predicted)")
    hist_ax.set_ylabel("count")
    hist_ax.set_title("Residual distribution")
    fig.suptitle(f"Residuals: {ctx.best_model} (test)")
    return _save(fig, path)


PLOTS: dict[str, Callable[[ReportContext, Path], bool]] = {
    "model_comparison": model_comparison,
    "learning_curves": learning_curves,
    "tuning_curves": tuning_curves,
    "tuning_parameters": tuning_parameters,
    "confusion_matrix": confusion_matrix,
    "roc_curve": roc_curve,
    "feature_importance": feature_importance,
    "predicted_vs_actual": predicted_vs_actual,
    "residuals": residuals,
}


# Drawn once per search: the first search's under the plain name, every other one's as <name>_<search>.
SEARCH_PLOTS = ("tuning_curves", "tuning_parameters")


def search_plot_name(plot: str, search: str, first: bool) -> str:
    return plot if first else f"{plot}_{search}"


def render_all(ctx: ReportContext, plots_dir: Path) -> dict[str, Path]:
    """Draw every entry that applies to `plots_dir/<name>.png`; returns name -> path of those drawn."""
    plots_dir = Path(plots_dir)
    drawn = {}
    for name, draw in PLOTS.items():
        path = plots_dir / f"{name}.png"
        if draw(ctx, path):
            drawn[name] = path
    for i, (search, summary) in enumerate(list(ctx.searches.items())[1:], start=1):
        one = replace(ctx, trials=summary["trials"], best_params=summary["best_params"])
        for plot in SEARCH_PLOTS:
            name = search_plot_name(plot, search, first=False)
            if PLOTS[plot](one, plots_dir / f"{name}.png"):
                drawn[name] = plots_dir / f"{name}.png"
    return drawn
