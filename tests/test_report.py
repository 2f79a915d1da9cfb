"""The evaluation report from a hand-built context: plots, report.md and a self-contained report.html.

No Ray and no training: a ReportContext is plain data, so these run in a few seconds.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from rayfit.evaluation.context import ReportContext
from rayfit.evaluation.plots import PLOTS, render_all
from rayfit.evaluation.report import format_value, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ODD_NAME = "<b>x</b>"  # a model name that must come out escaped in HTML
PREP_LOG = ["dropped 3 duplicate rows", "imputed 5 missing values in 'age' with the median"]
CLASSIFICATION_PLOTS = {"model_comparison", "learning_curves", "tuning_curves", "tuning_parameters",
                        "confusion_matrix", "roc_curve", "pr_curve", "calibration", "feature_importance"}
REGRESSION_PLOTS = {"model_comparison", "feature_importance", "predicted_vs_actual", "residuals"}


def _history(epochs: int, start: float) -> list[dict]:
    return [{"epoch": e, "train_loss": start / e, "val_loss": start / e + 0.05 * e} for e in range(1, epochs + 1)]


def _trial(trial_id: str, epochs: int, lr: float, status: str = "TERMINATED") -> dict:
    history = [{"epoch": e, "val_loss": 1.0 / e + lr} for e in range(1, epochs + 1)]
    return {"trial_id": trial_id, "params": {"lr": lr, "hidden": 32}, "val_loss": history[-1]["val_loss"],
            "val_accuracy": 0.8, "epochs": epochs, "status": status, "history": history}


@pytest.fixture
def classification_ctx() -> ReportContext:
    rng = np.random.default_rng(0)
    y_test = rng.integers(0, 2, size=80)
    p1 = 0.4 * y_test + 0.6 * rng.random(80)  # separable enough, not perfectly
    proba = np.column_stack([1 - p1, p1])

    def scores(acc: float, log_loss=0.4) -> dict:
        return {"accuracy": acc, "precision": acc - 0.02, "recall": acc + 0.01, "f1": acc, "roc_auc": 0.9,
                "log_loss": log_loss}

    return ReportContext(
        name="binary-demo", task="classification", primary_metric="accuracy", best_model="torch_mlp",
        dataset={"rows": 400, "features": 5, "classes": 2, "source": "data/demo.csv", "target": "label",
                 "split_sizes": {"train": 240, "val": 80, "test": 80}},
        models={
            "logistic_regression": {"framework": "sklearn", "test": scores(0.81), "val": scores(0.80),
                                    "train_time_s": 0.12},
            "torch_mlp": {"framework": "torch", "test": scores(0.874), "val": scores(0.88), "train_time_s": 9.5},
            ODD_NAME: {"framework": "keras", "test": scores(0.79, log_loss=None), "val": scores(0.78, float("nan")),
                       "train_time_s": 11.0},
        },
        prep_log=PREP_LOG,
        histories={"torch_mlp": _history(8, 0.7), ODD_NAME: _history(5, 0.9)},
        best_params={"lr": 0.003162, "hidden": 64},
        trials=[_trial("t_00", 10, 0.01, "completed"), _trial("t_01", 2, 0.3, "stopped by scheduler"),
                _trial("t_02", 4, 0.1, "early stopping")],
        y_test=y_test, y_pred=proba.argmax(axis=1), proba=proba, class_names=["no", "yes"],
        importance=[("age", 0.12, 0.01), ("income", 0.05, 0.02), ("city", 0.01, 0.005), ("b", 0.0, 0.001),
                    ("a", -0.002, 0.001)],
        config_yaml="name: binary-demo\nseed: 0\n", stage_times={"prepare": 1.2, "train": 20.5, "report": 2.0},
        created="2024-01-01T00:00:00", artifacts={"model": "checkpoints/torch_mlp", "log": "run.log"},
    )


@pytest.fixture
def regression_ctx() -> ReportContext:
    rng = np.random.default_rng(1)
    y_test = rng.normal(50, 10, size=60)
    return ReportContext(
        name="regression-demo", task="regression", primary_metric="rmse", best_model="ridge",
        dataset={"rows": 300, "features": 3, "source": "data/houses.parquet", "target": "price",
                 "split_sizes": {"train": 180, "val": 60, "test": 60}},
        models={
            "ridge": {"framework": "sklearn", "test": {"rmse": 2.1, "mae": 1.6, "r2": 0.95},
                      "val": {"rmse": 2.0, "mae": 1.5, "r2": 0.96}, "train_time_s": 0.05},
            "random_forest": {"framework": "sklearn", "test": {"rmse": 2.9, "mae": 2.2, "r2": 0.91},
                              "val": {"rmse": 2.7, "mae": 2.0, "r2": 0.92}, "train_time_s": 1.3},
        },
        prep_log=["nothing to clean"],
        y_test=y_test, y_pred=y_test + rng.normal(0, 2, size=60),
        importance=[("sqft", 6.0, 0.4), ("rooms", 1.5, 0.2), ("age", 0.3, 0.1)],
    )


def _render(ctx: ReportContext, run_dir: Path) -> tuple[dict[str, Path], str, str]:
    plots = render_all(ctx, run_dir / "plots")
    write_report(ctx, run_dir, plots)
    return plots, (run_dir / "report.md").read_text(encoding="utf-8"), (run_dir / "report.html").read_text(
        encoding="utf-8")


def _assert_valid_pngs(plots: dict[str, Path]) -> None:
    for name, path in plots.items():
        assert path == path.parent / f"{name}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert len(data) > 5_000, f"{name}.png is only {len(data)} bytes"


def test_classification_plots(classification_ctx, tmp_path):
    plots = render_all(classification_ctx, tmp_path / "plots")
    assert set(plots) == CLASSIFICATION_PLOTS
    _assert_valid_pngs(plots)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(f"{n}.png" for n in plots)


def test_regression_plots_skip_classification_ones(regression_ctx, tmp_path):
    plots = render_all(regression_ctx, tmp_path / "plots")
    assert set(plots) == REGRESSION_PLOTS
    _assert_valid_pngs(plots)
    for skipped in ("confusion_matrix", "roc_curve", "learning_curves", "tuning_curves"):
        assert not (tmp_path / "plots" / f"{skipped}.png").exists()


@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_plot_writes_nothing_when_it_does_not_apply(name, tmp_path):
    empty = ReportContext(name="empty", task="classification", primary_metric="accuracy", best_model="m",
                          dataset={}, models={})
    path = tmp_path / f"{name}.png"
    assert PLOTS[name](empty, path) is False
    assert not path.exists()


def test_html_is_self_contained_and_escaped(classification_ctx, tmp_path):
    plots, _, page = _render(classification_ctx, tmp_path)
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) == len(plots)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert page.count("data:image/png;base64,") == len(plots)
    assert 'src="plots/' not in page
    assert not re.search(r'(href|src)="(https?:)?//', page)  # no CDN, no external CSS or JS
    assert "<script" not in page
    for name in classification_ctx.models:
        if name != ODD_NAME:
            assert name in page
    assert "torch_mlp (best)" in page
    assert ODD_NAME not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_markdown_content(classification_ctx, tmp_path):
    plots, md, _ = _render(classification_ctx, tmp_path)
    assert md.startswith("# rayfit report: binary-demo")
    summary = next(line for line in md.splitlines() if line.startswith("Best model:"))
    assert "torch_mlp" in summary and "0.874" in summary
    for line in PREP_LOG:
        assert f"- {line}" in md
    assert "| lr | 0.003162 |" in md and "| hidden | 64 |" in md
    for name in plots:
        assert f"](plots/{name}.png)" in md
    for model in classification_ctx.models:
        if model != ODD_NAME:
            assert model in md
    assert "\\<b\\>x\\</b\\>" in md and ODD_NAME not in md  # shown as text, not rendered as HTML
    # Top trials sorted by val loss, and the epoch budget: 16 of 3 x 10 trained.
    trial_rows = [line for line in md.splitlines() if line.startswith(("| t_0", "| **t_0"))]
    assert [re.search(r"t_0\d", row).group() for row in trial_rows] == ["t_00", "t_02", "t_01"]
    assert "3 trials; 16 epochs trained of a 30-epoch budget" in md
    # what ended each trial, and whose stops spared which share of the budget
    assert ("(3 trials × up to 10 epochs); 1 completed, 1 stopped by scheduler, 1 early stopping; the scheduler's "
            "stops spared 27%, early stopping (patience) spared 20% of it.") in md
    assert "| 4 | b | 0 | 0.001 |" in md  # importance table, 4 significant digits
    assert "```yaml\nname: binary-demo" in md
    assert "checkpoints/torch_mlp" in md


def test_missing_metrics_show_as_dash(classification_ctx, tmp_path):
    _, md, page = _render(classification_ctx, tmp_path)
    test_table = md.split("Test metrics (")[1]
    odd_test_row = next(line for line in test_table.splitlines() if line.startswith("| \\<b\\>x\\</b\\> | keras"))
    assert odd_test_row.rstrip(" |").split(" | ")[-2] == "–"  # log_loss, before train time
    assert not re.search(r"\bnan\b", md + page, re.IGNORECASE)
    assert "None" not in md and "None" not in page


def test_regression_report(regression_ctx, tmp_path):
    plots, md, page = _render(regression_ctx, tmp_path)
    assert "predicted_vs_actual" in plots
    assert "Best model: ridge" in md and "rmse 2.1" in md
    assert "Tuning" not in md and "Learning curves" not in md
    assert page.count("data:image/png;base64,") == len(plots) == len(REGRESSION_PLOTS)


@pytest.mark.parametrize("value, text", [
    (None, "–"), (float("nan"), "–"), (np.float32("nan"), "–"), (0.123456, "0.1235"), (12345.678, "1.235e+04"),
    (3, "3"), (np.int64(7), "7"), (2.0, "2"), ("relu", "relu"), (True, "True"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_every_search_gets_its_own_tuning_section(classification_ctx, tmp_path):
    from dataclasses import replace

    torch_search = {"model": "torch", "searcher": "random", "scheduler": "asha", "trial_mode": "inline",
                    "trial_mode_reason": "small network", "best_params": classification_ctx.best_params,
                    "trials": classification_ctx.trials, "wall_time_s": 8.2}
    gbm_trials = [_trial("g_00", 6, 0.02), _trial("g_01", 1, 0.4, "STOPPED")]
    gbm_search = {"model": "gradient_boosting", "searcher": "optuna", "scheduler": "asha", "trial_mode": "inline",
                  "trial_mode_reason": "baselines train inside the trial", "best_params": {"learning_rate": 0.1},
                  "trials": gbm_trials, "wall_time_s": 7.9}
    ctx = replace(classification_ctx, searches={"torch_tuned": torch_search, "gradient_boosting_tuned": gbm_search})
    plots, md, page = _render(ctx, tmp_path)
    # The first search keeps the plain plot names; the second gets its own, with its own trials.
    assert {"tuning_curves", "tuning_parameters", "tuning_curves_gradient_boosting_tuned",
            "tuning_parameters_gradient_boosting_tuned"} <= set(plots)
    _assert_valid_pngs(plots)
    first, second = md.index("## Tuning: torch_tuned"), md.index("## Tuning: gradient_boosting_tuned")
    assert first < second
    gbm_section = md[second:]
    assert "optuna proposals" in gbm_section and "| learning_rate | 0.1 |" in gbm_section
    assert "2 trials; 7 epochs trained of a 12-epoch budget" in gbm_section
    assert "](plots/tuning_curves_gradient_boosting_tuned.png)" in gbm_section
    assert "3 trials; 16 epochs trained" in md[first:second]
    assert "Tuning curves (gradient_boosting_tuned)" in page


def test_durations_have_units_and_sensible_precision():
    from rayfit.evaluation.report import format_seconds

    assert [format_seconds(s) for s in (0.04184, 3.21, 42.4, 250.6, None)] == ["42 ms", "3.2 s", "42 s", "4 min 11 s", "–"]


def test_multi_class_curves_are_one_class_against_the_rest(classification_ctx, tmp_path):
    from dataclasses import replace

    from rayfit.evaluation.plots import _scored_classes

    rng = np.random.default_rng(2)
    y_test = rng.integers(0, 3, size=90)
    proba = rng.dirichlet([1, 1, 1], size=90) * 0.5 + 0.5 * np.eye(3)[y_test]
    ctx = replace(classification_ctx, y_test=y_test, y_pred=proba.argmax(axis=1), proba=proba,
                  class_names=["a", "b", "c"])
    assert [name for name, _, _ in _scored_classes(ctx)] == ["a", "b", "c"]
    plots = render_all(ctx, tmp_path / "plots")
    assert {"roc_curve", "pr_curve", "calibration", "confusion_matrix"} <= set(plots)
    _assert_valid_pngs(plots)
    # binary: the positive class alone
    assert [name for name, _, _ in _scored_classes(classification_ctx)] == ["yes"]


def test_the_summary_comes_first_and_the_leaderboard_ranks_by_what_chose(classification_ctx, tmp_path):
    _, md, _ = _render(classification_ctx, tmp_path)
    assert md.index("## Summary") < md.index("## Dataset")
    summary = md[md.index("## Summary"):md.index("## Dataset")]
    # the best, the best other classic-ML model, the data, the time
    assert "- torch_mlp: test accuracy 0.874; the best other classic-ML model, logistic_regression: 0.81" in summary
    assert "- data: 400 rows, 5 features, 2 classes (240/80/80 train/val/test)" in summary
    assert "- wall time: 24 s until the report" in summary
    board = [line for line in summary.splitlines() if line.startswith("| ")][1:]
    names = [line.split(" | ")[0].strip("| *") for line in board]
    assert names == ["torch_mlp", "logistic_regression", "\\<b\\>x\\</b\\>"]  # by validation accuracy, best first
    assert board[0].startswith("| **torch_mlp**")  # the chosen one set apart


def test_the_first_line_says_when_no_model_beat_the_dummy(classification_ctx, tmp_path):
    led = {"metric": "accuracy", "yardstick": 0.967, "exported": 0.963,
           "beaten_on": {"metric": "roc_auc", "yardstick": 0.5, "exported": 0.9}}
    classification_ctx.selection = {"method": "cv", "folds": 5, "yardstick_led": led}
    write_report(classification_ctx, tmp_path, {})
    lines = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.strip()]
    assert lines[0].startswith("# rayfit report")
    assert lines[1].startswith("No model beat always answering the majority class (dummy) on accuracy")
    assert "torch_mlp, the best of the others, is exported instead" in lines[1] and "roc_auc" in lines[1]
