"""B1's plain side: the seed example's work in one process, without Ray.

Logistic regression, a random forest and gradient boosting; a PyTorch MLP 64-32 (dropout 0.3,
50 epochs, batch 32); the same MLP in Keras; accuracy, precision, recall, F1 and ROC-AUC on the test
split; one comparison plot. The data come from rayfit's own loading, cleaning, split and
preprocessing, so both sides of B1 train on identical arrays; everything after that is plain
scikit-learn, PyTorch and Keras, as someone would write it without rayfit.

    python bench/plain_script.py --out DIR [--epochs 50]

Writes DIR/metrics.json (test metrics and stage times) and DIR/plots/model_comparison.png.
"""
from __future__ import annotations

import os

# The Keras implementation rayfit's workers train with (tf-keras): B1 measures rayfit, not a
# difference between Keras 3 and tf-keras. Must be set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def load_data():
    """The quickstart's synthetic set through rayfit's data preparation: the arrays rayfit trains on."""
    from rayfit.config import DataConfig
    from rayfit.data import prepare

    return prepare(DataConfig(source="synthetic"), seed=0)


def fit_sklearn(data) -> dict:
    """The three baselines with rayfit's hyperparameters; returns name -> P(class 1) on the test split."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    weights = data.class_weights
    estimators = {
        "linear": LogisticRegression(max_iter=2000, class_weight=weights),
        "random_forest": RandomForestClassifier(n_estimators=200, class_weight=weights, random_state=0, n_jobs=1),
        "gradient_boosting": HistGradientBoostingClassifier(class_weight=weights, random_state=0),
    }
    return {name: est.fit(data.X_train, data.y_train).predict_proba(data.X_test)[:, 1]
            for name, est in estimators.items()}


def fit_torch(data, epochs: int, batch_size: int) -> np.ndarray:
    """MLP 64-32, dropout 0.3, AdamW, one logit; the best validation epoch's weights are kept."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(data.X_train.shape[1], 64), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    loss_fn = nn.BCEWithLogitsLoss()
    X_val = torch.as_tensor(data.X_val)
    y_val = torch.as_tensor(data.y_val, dtype=torch.float32)
    loader = DataLoader(TensorDataset(torch.as_tensor(data.X_train), torch.as_tensor(data.y_train, dtype=torch.float32)),
                        batch_size=batch_size, shuffle=True)
    best_loss, best_state = float("inf"), None
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loss_fn(model(xb)[:, 0], yb).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(X_val)[:, 0], y_val))
        if val_loss < best_loss:
            best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    with torch.no_grad():
        return torch.sigmoid(model(torch.as_tensor(data.X_test))[:, 0]).numpy()


def fit_keras(data, epochs: int, batch_size: int) -> np.ndarray:
    """The same MLP in Keras; the best validation epoch's weights are kept."""
    import tensorflow as tf
    from tensorflow import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(shape=(data.X_train.shape[1],)),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.3),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.0),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True))
    keep_best = keras.callbacks.EarlyStopping(monitor="val_loss", patience=epochs, restore_best_weights=True)
    model.fit(data.X_train, data.y_train.astype(np.float32), epochs=epochs, batch_size=batch_size,
              validation_data=(data.X_val, data.y_val.astype(np.float32)), callbacks=[keep_best], verbose=0)
    return tf.sigmoid(model(data.X_test, training=False)[:, 0]).numpy()


def score(y_true: np.ndarray, p_positive: np.ndarray) -> dict:
    from sklearn import metrics

    predicted = (p_positive >= 0.5).astype(int)
    return {"accuracy": float(metrics.accuracy_score(y_true, predicted)),
            "precision": float(metrics.precision_score(y_true, predicted, zero_division=0)),
            "recall": float(metrics.recall_score(y_true, predicted, zero_division=0)),
            "f1": float(metrics.f1_score(y_true, predicted, zero_division=0)),
            "roc_auc": float(metrics.roc_auc_score(y_true, p_positive))}


def comparison_plot(scores: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(METRICS)
    for i, metric in enumerate(METRICS):
        ax.bar(np.arange(len(names)) + i * width, [scores[n][metric] for n in names], width, label=metric)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names)
    ax.set_ylim(0, 1)
    ax.set_title("Test metrics by model")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] = round(now - clock, 3)
        clock = now

    data = load_data()
    lap("data")
    probabilities = fit_sklearn(data)
    lap("sklearn")
    probabilities["torch_mlp"] = fit_torch(data, args.epochs, args.batch_size)
    lap("torch")
    probabilities["keras_mlp"] = fit_keras(data, args.epochs, args.batch_size)
    lap("keras")
    scores = {name: score(data.y_test, p) for name, p in probabilities.items()}
    comparison_plot(scores, out / "plots" / "model_comparison.png")
    lap("evaluate")
    (out / "metrics.json").write_text(json.dumps({"models": scores, "stage_times_s": stages}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
