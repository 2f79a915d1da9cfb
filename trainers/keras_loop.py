"""The Keras training loop for a Ray Train worker (MultiWorkerMirroredStrategy), a Tune trial or one task.

Plain Keras: build and compile under the strategy's scope, `fit` on a `tf.data` pipeline. Ray
appears where a checkpoint is restored (`get_checkpoint`) and in the epoch-end callback, which
reports metrics with a checkpoint. Schedule and early stopping are the PyTorch loop's own.
"""
from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
from ray import tune

from rayfit.trainers.target_scale import standardize
from rayfit.trainers.device import DeviceChoice, Runtime, choose_device
from rayfit.trainers.keras_model import ARCH, BEST_WEIGHTS, MODEL_FILE
from rayfit.trainers.keras_models import build_keras_model
from rayfit.trainers.schedule import EarlyStopping, LearningRateSchedule
from rayfit.trainers.task_checkpoints import latest_checkpoint, save_checkpoint
from rayfit.trainers.torch_loop import architecture

TRAIN_STATE = "train_state.json"


def _optimizer(keras, settings):
    common = {"learning_rate": settings["lr"], "weight_decay": settings["weight_decay"] or None}
    if settings["grad_clip"]:
        common["global_clipnorm"] = settings["grad_clip"]
    kind = settings["optimizer"]
    if kind == "adamw":
        return keras.optimizers.AdamW(**{**common, "weight_decay": settings["weight_decay"]})
    if kind == "adam":
        return keras.optimizers.Adam(**common)
    if kind == "sgd":
        return keras.optimizers.SGD(momentum=settings["momentum"], **common)
    return keras.optimizers.RMSprop(momentum=settings["momentum"], **common)


def _loss(keras, task: str, n_outputs: int):
    if task == "regression":
        return keras.losses.MeanSquaredError()
    if n_outputs == 1:
        return keras.losses.BinaryCrossentropy(from_logits=True)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _targets(y: np.ndarray, task: str, n_outputs: int, scale=None) -> np.ndarray:
    if task == "classification" and n_outputs > 1:
        return y.astype(np.int64)
    # regression (standardized, trainers/target_scale.py), or binary with one logit
    return standardize(y.astype(np.float64), scale).astype(np.float32).reshape(-1, 1)


def _choose_tf_device(tf, keras, mixed_precision) -> DeviceChoice:
    """GPU or CPU by device.py's rule, made real: TensorFlow is kept off GPUs Ray did not assign,
    and the float16 policy is set only on a GPU (reset otherwise: a reused Tune actor keeps it)."""
    sees_gpu = bool(tf.config.list_physical_devices("GPU"))
    choice = choose_device("TensorFlow", sees_gpu, mixed_precision)
    if choice.type == "cpu" and sees_gpu:
        try:
            # Ray leaves CUDA_VISIBLE_DEVICES alone for a process it gave no GPU, and TensorFlow
            # would take the machine's GPUs anyway.
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            pass  # TensorFlow already started here (a reused Tune actor): its first trial hid them
    keras.mixed_precision.set_global_policy("mixed_float16" if choice.amp else "float32")
    return choice


def _make_epoch_callback(keras, config, arch, X_val, y_val, loss_fn, rank, state, runtime):
    settings, task = config["settings"], config["task"]

    class ReportEpoch(keras.callbacks.Callback):
        """Learning rate, validation, early stopping and checkpoints, reported to Ray Train or Tune."""

        def __init__(self):
            super().__init__()
            self.schedule = LearningRateSchedule.from_settings(settings)
            self.stopper = EarlyStopping(settings["patience"], settings["min_delta"])
            self.history: list[dict] = []
            self.best_weights = None
            if state is not None:
                self.schedule.load_state_dict(state["schedule"])
                self.stopper.load_state_dict(state["stopper"])
                self.history = state["history"]

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()
            keras.backend.set_value(self.model.optimizer.learning_rate, self.schedule.lr(epoch + 1))

        def on_epoch_end(self, epoch, logs=None):
            # Every worker scores the same full validation set with the same (mirrored) weights,
            # so every worker reaches the same early-stopping decision.
            # A direct call, not predict(): under the strategy predict() would shard the val set.
            out = np.concatenate([self.model(X_val[i:i + 1024], training=False).numpy()
                                  for i in range(0, len(X_val), 1024)])
            metrics = {"epoch": epoch + 1, "train_loss": float(logs["loss"]), "val_loss": float(loss_fn(y_val, out)),
                       "lr": self.schedule.lr(epoch + 1)}
            if task == "classification":
                predicted = (out[:, 0] > 0) if out.shape[1] == 1 else out.argmax(axis=1)
                metrics["val_accuracy"] = float(np.mean(predicted == y_val.reshape(-1)))
            metrics["epoch_time_s"] = time.perf_counter() - self.started  # training + validation
            metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
            improved = self.stopper.step(metrics["val_loss"], epoch + 1)
            self.schedule.observe(metrics["val_loss"])
            if improved or self.best_weights is None:
                self.best_weights = self.model.get_weights()
            self.history.append(metrics)
            progress = config.get("progress")
            if progress is not None and rank == 0:
                progress.push.remote({"stage": config["name"], "epoch": epoch + 1,
                                      "epochs": settings["epochs"], "metrics": metrics})
            if config["mode"] == "tune" and not (improved or config.get("checkpoint_every_epoch")):
                tune.report(metrics)  # a trial checkpoints when it improves (every epoch under PBT)
            elif config["mode"] == "tune":
                with tempfile.TemporaryDirectory() as tmp:
                    self._write(Path(tmp), epoch + 1)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
            elif config["mode"] == "task":  # one process: a checkpoint every epoch, in the run directory
                with tempfile.TemporaryDirectory() as tmp:
                    self._write(Path(tmp), epoch + 1)
                    save_checkpoint(Path(tmp), config["checkpoint_dir"], epoch + 1, settings["keep_checkpoints"])
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    # Every worker saves (saving may synchronise mirrored variables); rank 0's is kept.
                    self._write(Path(tmp), epoch + 1)
                    checkpoint = ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None
                    ray.train.report(metrics, checkpoint=checkpoint)
            if self.stopper.should_stop:
                self.model.stop_training = True

        def _write(self, directory: Path, epoch: int) -> None:
            self.model.save(directory / MODEL_FILE)
            np.savez(directory / BEST_WEIGHTS, **{f"w{i}": w for i, w in enumerate(self.best_weights)})
            (directory / ARCH).write_text(json.dumps(arch))
            (directory / "history.json").write_text(json.dumps(self.history))
            runtime.write(directory)
            (directory / TRAIN_STATE).write_text(json.dumps({
                "epoch": epoch, "schedule": self.schedule.state_dict(), "stopper": self.stopper.state_dict(),
                "history": self.history, "settings": settings}))

    return ReportEpoch()


def keras_train_loop_per_worker(config: dict) -> list[dict]:
    import tensorflow as tf
    from tensorflow import keras

    settings, task, seed = config["settings"], config["task"], config["seed"]
    data = config["data"]
    if isinstance(data, ray.ObjectRef):
        data = ray.get(data)
    threads = max(1, int(config.get("threads", 1)))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # already set in this process (a reused Tune trial actor)
    keras.utils.set_random_seed(seed)
    device = _choose_tf_device(tf, keras, settings["mixed_precision"])

    if config["mode"] == "train":
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
        strategy = tf.distribute.MultiWorkerMirroredStrategy()  # TF_CONFIG comes from Ray Train
        checkpoint = ray.train.get_checkpoint()  # set after a worker failure or by `rayfit resume`
    else:  # a Tune trial or a single task: one process, the default strategy
        rank, world = 0, 1
        strategy = tf.distribute.get_strategy()
        # set when a trial is resumed or exploited (PBT), or when a task is retried or resumed
        checkpoint = (latest_checkpoint(config["checkpoint_dir"]) if config["mode"] == "task"
                      else tune.get_checkpoint())
    n_outputs = config["n_outputs"]
    scale = config.get("target_scale")
    X_val, y_val = data["X_val"], _targets(data["y_val"], task, n_outputs, scale)
    arch = architecture(settings, config["model"], X_val.shape[1:], n_outputs, scale)
    loss_fn = _loss(keras, task, n_outputs)

    state = None
    with strategy.scope():
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                model = keras.models.load_model(Path(directory) / MODEL_FILE)  # weights + optimizer state
                state = json.loads((Path(directory) / TRAIN_STATE).read_text())
        else:
            model = build_keras_model(arch)
            model.compile(optimizer=_optimizer(keras, settings), loss=loss_fn)
    runtime = Runtime(
        device.type, world,
        # the strategy's replicas are its devices: each worker's GPUs under MultiWorkerMirroredStrategy
        gpus_per_worker=strategy.num_replicas_in_sync // world if device.type == "cuda" else 0,
        # what the model computes in: a restored model keeps the policy it was saved with
        amp=any(layer.compute_dtype == "float16" for layer in model.layers))

    epoch_dataset = _epoch_datasets(tf, config, data, n_outputs, world)
    callback = _make_epoch_callback(keras, config, arch, X_val, y_val, loss_fn, rank, state, runtime)
    if state is not None:
        with checkpoint.as_directory() as directory, np.load(Path(directory) / BEST_WEIGHTS) as saved:
            callback.best_weights = [saved[f"w{i}"] for i in range(len(saved.files))]
    class_weight = config.get("class_weights")
    class_weight = dict(enumerate(class_weight)) if class_weight else None
    # One fit() per epoch: a streamed shard is a new pass each epoch, and the in-memory pipeline
    # is reshuffled by epoch the same way, so a resumed run replays the same batches.
    for epoch in range(state["epoch"] if state else 0, settings["epochs"]):
        if callback.stopper.should_stop:
            break
        model.fit(epoch_dataset(epoch), epochs=epoch + 1, initial_epoch=epoch, verbose=0, callbacks=[callback],
                  class_weight=class_weight)
    return callback.history


def _epoch_datasets(tf, config, data, n_outputs, world):
    """epoch -> a tf.data.Dataset of this epoch's batches."""
    settings, task, seed = config["settings"], config["task"], config["seed"]
    label_dtype = tf.int64 if task == "classification" and n_outputs > 1 else tf.float32

    if config.get("streaming"):
        # This worker's shard of the Ray Dataset, already split by Ray Train: no re-sharding.
        shard = ray.train.get_dataset_shard("train")
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

        def labels_like_targets(x, y):  # as _targets: class indices, or a float column
            y = tf.cast(y, label_dtype)
            if label_dtype != tf.float32:
                return x, y
            scale = config.get("target_scale") if task == "regression" else None
            return x, tf.reshape(standardize(y, scale), (-1, 1))

        def streamed(epoch):
            dataset = shard.to_tf("x", "y", batch_size=settings["batch_size"], local_shuffle_seed=seed + epoch,
                                  local_shuffle_buffer_size=8 * settings["batch_size"])
            return dataset.map(labels_like_targets).with_options(options)

        return streamed

    X_train, y_train = data["X_train"], _targets(data["y_train"], task, n_outputs, config.get("target_scale"))
    # Batched by the global batch; tf.distribute shards it so each worker trains on batch_size rows
    # per step. Whole batches only: uneven last steps across workers can hang.
    global_batch = settings["batch_size"] * world
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def in_memory(epoch):
        dataset = tf.data.Dataset.from_tensor_slices((X_train, y_train))
        dataset = dataset.shuffle(len(X_train), seed=seed + epoch)
        dataset = dataset.batch(global_batch, drop_remainder=len(X_train) >= global_batch)
        return dataset.with_options(options)

    return in_memory
