"""The Keras training loop for a Ray Train worker (MultiWorkerMirroredStrategy).

Plain Keras: build and compile under the strategy's scope, `fit` on a `tf.data` pipeline. Ray
appears in the epoch-end callback, which reports metrics with a checkpoint.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import ray
import ray.train

from rayfit.trainers.keras_model import ARCH, MODEL_FILE
from rayfit.trainers.keras_models import build_keras_model
from rayfit.trainers.torch_loop import EarlyStopping, architecture


def _make_epoch_callback(keras, config, X_val, y_val, loss_fn, rank):
    settings, task = config["settings"], config["task"]

    class ReportEpoch(keras.callbacks.Callback):
        """Validation, early stopping and a checkpoint every epoch, reported to Ray Train."""

        def __init__(self):
            super().__init__()
            self.stopper = EarlyStopping(settings["patience"], settings["min_delta"])
            self.history: list[dict] = []

        def on_epoch_end(self, epoch, logs=None):
            # Every worker scores the same full validation set with the same (mirrored) weights,
            # so every worker reaches the same early-stopping decision.
            out = self.model(X_val, training=False)
            metrics = {"epoch": epoch + 1, "train_loss": float(logs["loss"]), "val_loss": float(loss_fn(y_val, out))}
            if task == "classification":
                metrics["val_accuracy"] = float(np.mean(np.argmax(out.numpy(), axis=1) == y_val))
            self.stopper.step(metrics["val_loss"], epoch + 1)
            self.history.append(metrics)
            progress = config.get("progress")
            if progress is not None and rank == 0:
                progress.push.remote({"stage": config["name"], "epoch": epoch + 1,
                                      "epochs": settings["epochs"], "metrics": metrics})
            with tempfile.TemporaryDirectory() as tmp:
                # Every worker saves (the weights are mirrored); only rank 0's copy is kept.
                self.model.save(Path(tmp) / MODEL_FILE)
                (Path(tmp) / ARCH).write_text(json.dumps(config["arch"]))
                (Path(tmp) / "history.json").write_text(json.dumps(self.history))
                checkpoint = ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
                ray.train.report(metrics, checkpoint=checkpoint)
            if self.stopper.should_stop:
                self.model.stop_training = True

    return ReportEpoch()


def keras_train_loop_per_worker(config: dict) -> list[dict]:
    import tensorflow as tf
    from tensorflow import keras

    settings, task = config["settings"], config["task"]
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    threads = max(1, int(config.get("threads", 1)))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(config["seed"])

    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # TF_CONFIG comes from Ray Train
    X_train, y_train = data["X_train"], data["y_train"]
    X_val, y_val = data["X_val"], data["y_val"]
    config["arch"] = architecture(settings, X_train.shape[1], config["n_outputs"])

    if task == "classification":
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        loss_fn = keras.losses.MeanSquaredError()
    with strategy.scope():
        model = build_keras_model(config["arch"])
        if settings["weight_decay"] > 0:
            optimizer = keras.optimizers.AdamW(learning_rate=settings["lr"], weight_decay=settings["weight_decay"])
        else:
            optimizer = keras.optimizers.Adam(learning_rate=settings["lr"])
        model.compile(optimizer=optimizer, loss=loss_fn)

    # The pipeline is batched by the global batch; tf.distribute shards it so each worker trains
    # on batch_size rows per step. Whole batches only: uneven last steps across workers can hang.
    global_batch = settings["batch_size"] * world
    dataset = tf.data.Dataset.from_tensor_slices((X_train, y_train))
    dataset = dataset.shuffle(len(X_train), seed=config["seed"], reshuffle_each_iteration=True)
    dataset = dataset.batch(global_batch, drop_remainder=len(X_train) >= global_batch)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)

    callback = _make_epoch_callback(keras, config, X_val, y_val, loss_fn, rank)
    class_weight = config.get("class_weights")
    model.fit(dataset, epochs=settings["epochs"], verbose=0, callbacks=[callback],
              class_weight=dict(enumerate(class_weight)) if class_weight is not None else None)
    return callback.history
