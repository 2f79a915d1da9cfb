"""B4, tuning: a 32-trial ASHA search over the PyTorch MLP on the quickstart data against the same
trials run to their full budget (FIFO), both through `rayfit.tuning.search.run_search`.

The searcher is rayfit's seeded random search, so both schedulers see the same 32 configurations
(checked: `same_trials`). Early stopping inside a trial is switched off on both sides (patience =
max_t) so that "full budget" means every trial trains max_t epochs and the only difference is the
scheduler. Three targets: ASHA's epochs <= 1/3 of the full budget's, its best validation accuracy
within 0.5 points of the full budget's, and its wall time <= 1.0x the sum of its trials' own
training time: the epoch_time_s (training + validation) of every epoch each trial trained, read from
its result.json (a trial reports at ASHA's rungs and its end, carrying the epochs in between). The
wall time over the trials' time_total_s (their whole time in Tune, start-up, reports and
checkpoints included, as rayfit records it) is given beside it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from bench.harness import alternate, bootstrap_ratio, check, finding, median, ratio, say
from bench.ray_session import scratch, trial_training, training_data


# The search's wall time over its trials' own training: 2 trials at once on 2 CPUs make 0.5 the
# ideal, so 1.0 leaves half the wall time to Tune, start-ups and reports.
WALL_TARGET = 1.0


def _quickstart_data():
    from rayfit.config import DataConfig
    from rayfit.data import prepare

    prepared = prepare(DataConfig(source="synthetic"), seed=0)  # what `rayfit run` trains on
    return training_data({"X_train": prepared.X_train, "y_train": prepared.y_train,
                          "X_val": prepared.X_val, "y_val": prepared.y_val}), len(prepared.y_val)


def _search(scheduler: str, sizes: dict, data, storage: Path) -> dict:
    from rayfit.tuning.search import run_search, search_name

    from rayfit.config import TorchConfig, TuneSettings

    settings = TuneSettings(num_samples=sizes["trials"], scheduler=scheduler, max_t=sizes["max_t"],
                            grace_period=sizes["grace"], reduction_factor=3)
    base = TorchConfig(hidden_sizes=[64, 32], patience=sizes["max_t"])  # the quickstart's torch section
    result = run_search(settings, base, data, storage)
    trained_s, reported = trial_training(storage / search_name(settings))
    # Tune's time_total_s per trial, where rayfit records it: the trainable's whole time (its
    # start-up, data fetch, reports and checkpoints too), so more than the training itself.
    totals = [t.get("time_total_s") for t in result.trials]
    recorded = all(isinstance(v, (int, float)) and not math.isnan(v) for v in totals)
    picked = result.trials[0]  # sorted by val_loss: the trial the search returns
    return {
        "wall_s": result.wall_time_s, "epochs_trained": result.epochs_trained, "epochs_budget": result.epochs_budget,
        "picked_val_accuracy": picked.get("val_accuracy"),
        "max_val_accuracy": max(row.get("val_accuracy", 0.0) for t in result.trials for row in t["history"]),
        "trial_training_s": trained_s, "trial_time_total_s": sum(totals) if recorded else None,
        "epochs_reported": reported,
        "params": sorted(json.dumps(t["params"], sort_keys=True) for t in result.trials),
        "trial_mode": getattr(result, "trial_mode", "inline"),
    }


def run(quick: bool) -> dict:
    # ASHA's promotions depend on the order results arrive, so its searches are repeated; the full
    # budget trains every epoch of every trial whatever the order, so one FIFO search is its figure.
    sizes = {"trials": 4, "max_t": 4, "grace": 1, "repeats": 1, "asha_repeats": 1} if quick else \
            {"trials": 32, "max_t": 20, "grace": 2, "repeats": 1, "asha_repeats": 5}
    data, val_rows = _quickstart_data()
    with scratch("b4") as work:
        samples = alternate({
            "asha": lambda r: _search("asha", sizes, data, work / f"asha-{r}"),
            "fifo": lambda r: _search("fifo", sizes, data, work / f"fifo-{r}"),
        }, sizes["repeats"], "B4")
        for repeat in range(sizes["repeats"], sizes["asha_repeats"]):
            say(f"B4 asha: repeat {repeat + 1}/{sizes['asha_repeats']}")
            samples["asha"].append(_search("asha", sizes, data, work / f"asha-{repeat}"))
    asha, fifo = samples["asha"], samples["fifo"]
    epochs_interval = bootstrap_ratio([s["epochs_trained"] for s in asha], [s["epochs_trained"] for s in fifo])
    wall_interval = bootstrap_ratio([s["wall_s"] for s in asha], [s["trial_training_s"] for s in asha])
    epochs_ratio = ratio(median([s["epochs_trained"] for s in asha]), median([s["epochs_trained"] for s in fifo]))
    gap_points = 100 * (median([s["picked_val_accuracy"] for s in fifo]) - median([s["picked_val_accuracy"] for s in asha]))
    asha_wall = median([s["wall_s"] for s in asha])
    asha_trained = median([s["trial_training_s"] for s in asha])
    figures = {
        **{k: sizes[k] for k in ("trials", "max_t", "grace", "repeats", "asha_repeats")}, "val_rows": val_rows,
        "asha_epochs_trained_each": [s["epochs_trained"] for s in asha],
        "asha_wall_over_training_each": [ratio(s["wall_s"], s["trial_training_s"]) for s in asha],
        "one_val_row_points": 100 / val_rows,  # the accuracy step: one validation row
        "same_trials": all(a["params"] == f["params"] for a, f in zip(asha, fifo)),
        "trial_mode": asha[-1]["trial_mode"],
        **{f"{name}_{key}": median([s[key] for s in runs]) for name, runs in (("asha", asha), ("fifo", fifo))
           for key in ("wall_s", "epochs_trained", "epochs_budget", "picked_val_accuracy", "max_val_accuracy",
                       "trial_training_s", "trial_time_total_s", "epochs_reported")},
        "epochs_ratio": epochs_ratio, "accuracy_gap_points": gap_points,
        "asha_wall_over_training": ratio(asha_wall, asha_trained),
        "asha_wall_over_time_total": ratio(asha_wall, median([s["trial_time_total_s"] for s in asha])),
        "fifo_wall_over_training": ratio(median([s["wall_s"] for s in fifo]),
                                         median([s["trial_training_s"] for s in fifo])),
    }
    return finding(figures, [
        check("ASHA epochs / full budget's", epochs_ratio, "<=", round(1 / 3, 3), interval=epochs_interval),
        check("best val accuracy: full budget - ASHA", gap_points, "<=", 0.5, " points"),
        check("ASHA wall / its trials' training", figures["asha_wall_over_training"], "<=", WALL_TARGET,
              interval=wall_interval),
    ])
