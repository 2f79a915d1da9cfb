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

from rayfit import metrics
from rayfit.metrics import is_missing

from .context import ReportContext

DPI = 110
VAL_COLOR, TEST_COLOR, BEST_COLOR = "#9ecae1", "#3182bd", "#fdd49e"
TOP_FEATURES = 20  # more bars than this stop being readable at report width
MAX_CURVES = 10  # one-vs-rest curves drawn at most (more classes: the first ten)
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
    # Best first, ranked by the score each was chosen on (cross-validation or validation).
    names = metrics.rank_models({m: ctx.models[m] for m in names}, metric)

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
    ax.set_xlabel(f"{metric} ({metrics.get(metric).direction} is better)")
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
        # A trial cut short: x where the scheduler stopped it, o where its own patience did.
        if len(epochs) < longest and trial.get("status") in ("stopped by scheduler", "early stopping"):
            marker = "x" if trial["status"] == "stopped by scheduler" else "o"
            ax.plot(epochs[-1], losses[-1], marker, color=line.get_color(), markersize=8, fillstyle="none")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val loss")
    ax.set_title(f"Tuning: validation loss of {len(trials)} trials (x: stopped by the scheduler, "
                 f"o: by early stopping)")
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
    side = max(4.5, 0.6 * k + 2)
    fig = Figure(figsize=(2 * side, max(4, 0.6 * k + 1.5)))
    # counts, and each true class's row as shares (what a class's recall and confusions are)
    for i, (normalize, fmt, title) in enumerate(((None, "d", "counts"), ("true", ".2f", "share of each true class"))):
        ax = fig.add_subplot(1, 2, i + 1)
        ConfusionMatrixDisplay.from_predictions(
            ctx.y_test, ctx.y_pred, labels=list(range(k)), display_labels=ctx.class_names or list(range(k)),
            normalize=normalize, values_format=fmt, cmap="Blues", colorbar=False, ax=ax,
            xticks_rotation="vertical" if k > 6 else "horizontal",
        )
        ax.set_title(f"{ctx.best_model} (test): {title}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _scored_classes(ctx: ReportContext) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(class name, is that class, its probability) for each class to draw a curve of: the positive
    class of a binary task, every class present in test one-vs-rest otherwise. None without
    probabilities or with a single class in test (the curves are undefined)."""
    if not ctx.is_classification or ctx.proba is None or ctx.proba.ndim != 2 or len(np.unique(ctx.y_test)) < 2:
        return []
    names = ctx.class_names or [str(i) for i in range(ctx.proba.shape[1])]
    classes = [1] if ctx.proba.shape[1] == 2 else [c for c in range(ctx.proba.shape[1]) if c in set(ctx.y_test)]
    return [(str(names[c]), np.asarray(ctx.y_test) == c, ctx.proba[:, c]) for c in classes]


def pr_curve(ctx: ReportContext, path: Path) -> bool:
    from sklearn.metrics import PrecisionRecallDisplay

    curves = _scored_classes(ctx)
    if not curves:
        return False
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for name, truth, score in curves[:MAX_CURVES]:
        PrecisionRecallDisplay.from_predictions(truth, score, name=name if len(curves) > 1 else ctx.best_model,
                                                plot_chance_level=len(curves) == 1, ax=ax)
    what = f"positive class: {curves[0][0]}" if len(curves) == 1 else "one class against the rest"
    ax.set_title(f"Precision-recall (test, {what})", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def calibration(ctx: ReportContext, path: Path) -> bool:
    """Predicted probability against the observed frequency, in 10 bins: how far the model's
    probabilities can be taken at their word."""
    from sklearn.calibration import calibration_curve

    curves = _scored_classes(ctx)
    if not curves:
        return False
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for name, truth, score in curves[:MAX_CURVES]:
        observed, predicted = calibration_curve(truth, score, n_bins=10, strategy="uniform")
        ax.plot(predicted, observed, marker="o", label=name if len(curves) > 1 else ctx.best_model)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"Calibration (test, {len(ctx.y_test)} rows, 10 bins)", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def roc_curve(ctx: ReportContext, path: Path) -> bool:
    curves = _scored_classes(ctx)  # the positive class, or each class against the rest
    if not curves:
        return False
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for i, (name, truth, score) in enumerate(curves[:MAX_CURVES]):
        RocCurveDisplay.from_predictions(truth, score, name=name if len(curves) > 1 else ctx.best_model,
                                         plot_chance_level=i == 0, ax=ax)
    what = f"positive class: {curves[0][0]}" if len(curves) == 1 else "one class against the rest"
    ax.set_title(f"ROC curve (test, {what})", fontsize=10)
    ax.legend(fontsize=7)
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
    "pr_curve": pr_curve,
    "calibration": calibration,
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
