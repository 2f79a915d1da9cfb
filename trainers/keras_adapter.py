"""Keras under the training core (trainers/adapter.py): a custom training step in a tf.function,
run by the default strategy in one process and by MultiWorkerMirroredStrategy across the workers of
a Ray Train worker group (Ray Train writes TF_CONFIG).

TensorFlow is imported when an adapter is made: only where a Keras network trains.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rayfit.trainers.device import Runtime, choose_device
from rayfit.trainers.target_scale import standardize

from rayfit.trainers.keras_model import BEST_WEIGHTS, OPTIMIZER, WEIGHTS, load_arrays, save_arrays


def weighted_loss(tf, out, y, task: str, class_weights):
    """trainers/losses.py's definition on TensorFlow tensors."""
    out = tf.cast(out, tf.float32)
    if out.shape[-1] == 1:
        out = out[:, 0]
    if task == "regression":
        per = tf.square(out - tf.cast(y, tf.float32))
    elif len(out.shape) == 1:
        per = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(y, tf.float32), logits=out)
    else:
        per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int64), logits=out)
    if class_weights is None:
        return tf.reduce_mean(per)
    weights = tf.gather(class_weights, tf.cast(y, tf.int64))
    return tf.reduce_sum(weights * per) / tf.reduce_sum(weights)


def penalized_variables(network) -> list:
    """Weight matrices and kernels: what L1 counts (as the PyTorch adapter's `dim() > 1`)."""
    return [v for v in network.trainable_variables if len(v.shape) > 1 and "bias" not in v.name]


def make_optimizer(keras, settings):
    """PyTorch's defaults, so a setting means the same in both; weight decay is decoupled."""
    common = {"learning_rate": settings.lr, "global_clipnorm": settings.grad_clip or None}
    decay = settings.weight_decay
    kind = settings.optimizer
    if kind == "adamw":
        return keras.optimizers.AdamW(weight_decay=decay, epsilon=1e-8, **common)
    if kind == "adam":
        return keras.optimizers.Adam(weight_decay=decay or None, epsilon=1e-8, **common)
    if kind == "sgd":
        return keras.optimizers.SGD(momentum=settings.momentum, weight_decay=decay or None, **common)
    return keras.optimizers.RMSprop(rho=0.99, epsilon=1e-8, momentum=settings.momentum,
                                    weight_decay=decay or None, **common)


def _choose_tf_device(tf, keras, mixed_precision):
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


@dataclass(frozen=True)
class WholeEpoch:
    """One worker's epoch of in-memory rows, already in its seeded order: batched inside TensorFlow."""

    X: np.ndarray
    y: np.ndarray


class KerasAdapter:
    def __init__(self, config, rank: int, world_size: int):
        import tensorflow as tf
        from tensorflow import keras

        self.tf, self.keras = tf, keras
        self.config, self.settings, self.rank, self.world = config, config.settings, rank, world_size
        # Dropout draws from a tf.random.Generator per layer, whose state the adapter can reseed
        # each epoch: a resumed run draws what the uninterrupted one drew.
        keras.backend.experimental.enable_tf_random_generator()
        threads = max(1, int(config.threads))
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            # TensorFlow already runs in this process (a reused Tune actor) and keeps its first
            # threads: said in the log when they differ from this trial's share.
            current = tf.config.threading.get_intra_op_parallelism_threads()
            if current not in (0, threads):
                warnings.warn(f"TensorFlow already started in this process with {current} threads; this run "
                              f"asked for {threads}", RuntimeWarning, stacklevel=2)
        choice = _choose_tf_device(tf, keras, self.settings.mixed_precision)
        self.amp = choice.amp
        # Several workers: TF_CONFIG comes from Ray Train. One: the default strategy.
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy() if world_size > 1 else tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        # the strategy's replicas are its devices: each worker's GPUs under MultiWorkerMirroredStrategy
        self.runtime = Runtime(choice.type, world_size,
                               gpus_per_worker=replicas // world_size if choice.type == "cuda" else 0, amp=self.amp)
        weights = config.class_weights if config.task == "classification" else None
        self.class_weights = tf.constant(weights, tf.float32) if weights else None

    # -- network and optimizer
    def build(self, arch: dict) -> None:
        from rayfit.trainers.keras_models import build_keras_model

        keras, tf = self.keras, self.tf
        with self.strategy.scope():
            self.network = build_keras_model(arch)
            optimizer = make_optimizer(keras, self.settings)
            if self.amp:
                optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.network.trainable_variables)
            self.loss_sum, self.loss_count = keras.metrics.Sum(), keras.metrics.Sum()
        # One worker steps its replica directly: no strategy.run around every step.
        self._step = tf.function(self._distributed_step if self.world > 1 else self._replica_step,
                                 reduce_retracing=True)
        # One worker's in-memory epoch runs as one call: a small network's step takes less than the
        # Python round trip into TensorFlow that calling it costs (a 64-32 MLP at batch 32: about
        # 3x faster an epoch). Traced once, for any number of rows.
        self._epoch = tf.function(self._replica_epoch, reduce_retracing=True)
        # Validation every epoch: traced once too (an eager call of the model costs about 10 ms).
        forward = lambda x: self.network(x, training=False)  # noqa: E731
        self._forward = forward if self.world > 1 else tf.function(forward, reduce_retracing=True)
        self._generators = None  # found once the network exists (_layer_generators)

    def _replica_step(self, x, y):
        tf, settings = self.tf, self.settings
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            out = self.network(x, training=True)
            data_loss = weighted_loss(tf, out, y, self.config.task, self.class_weights)
            loss = data_loss
            if settings.l1 > 0:
                loss += settings.l1 * tf.add_n([tf.reduce_sum(tf.abs(v)) for v in penalized_variables(self.network)])
            # Summed over replicas by apply_gradients: the mean of the workers' gradients, as DDP's.
            loss = loss / self.strategy.num_replicas_in_sync
            if self.amp:
                loss = self.optimizer.get_scaled_loss(loss)
        gradients = tape.gradient(loss, variables)
        if self.amp:
            gradients = self.optimizer.get_unscaled_gradients(gradients)
        self.optimizer.apply_gradients(zip(gradients, variables))
        rows = tf.cast(tf.shape(x)[0], tf.float32)
        self.loss_sum.update_state(data_loss * rows)
        self.loss_count.update_state(rows)
        return rows

    def _replica_epoch(self, X, y):
        tf, batch = self.tf, self.settings.batch_size
        rows = tf.shape(X)[0]
        for start in tf.range(0, rows, batch):
            self._replica_step(X[start:start + batch], y[start:start + batch])
        return rows

    def _distributed_step(self, x, y):
        rows = self.strategy.run(self._replica_step, args=(x, y))
        return self.tf.add_n(list(self.strategy.experimental_local_results(rows)))

    def seed(self, seed: int) -> None:
        if not hasattr(self, "network"):
            # Before the network exists: its initial weights come from TensorFlow's global seed (and
            # Python's and NumPy's). Set once: setting it again, as every epoch reseeds, makes every
            # step after it run about 12x slower (22 steps of a small MLP: 16 -> 200 ms).
            self.keras.utils.set_random_seed(seed)
        # Dropout draws from each layer's generator, reseeded here (an epoch's draws are its own).
        with self.strategy.scope():
            for i, generator in enumerate(self._layer_generators()):
                generator.reset_from_seed(seed + i)

    def _layer_generators(self) -> list:
        if not hasattr(self, "network"):
            return []
        if self._generators is not None:
            return self._generators
        found = self._generators = []
        for layer in [self.network, *self.network.submodules]:
            rng = getattr(layer, "_random_generator", None)
            if rng is not None and hasattr(rng, "_maybe_init"):
                rng._maybe_init()  # created now, not at the first step: seeded the same either way
                if getattr(rng, "_generator", None) is not None:
                    found.append(rng._generator)
        return found

    def rng_state(self) -> dict:
        return {"generators": [g.state.numpy().tolist() for g in self._layer_generators()]}

    def set_rng_state(self, state: dict) -> None:
        for generator, values in zip(self._layer_generators(), state.get("generators", [])):
            generator.state.assign(np.asarray(values, dtype=generator.state.dtype.as_numpy_dtype))

    # -- data
    def _label_dtype(self):
        tf, config = self.tf, self.config
        return tf.int64 if config.task == "classification" and config.n_outputs > 1 else tf.float32

    def in_memory_batches(self, X: np.ndarray, y: np.ndarray):
        tf, seed = self.tf, self.config.seed
        # Batched by the global batch; tf.distribute shards it so each worker trains on batch_size
        # rows per step. Whole batches only: uneven last steps across workers can hang.
        global_batch = self.settings.batch_size * self.world
        if self.world == 1:
            # One worker: the rows in a seeded order, cut into batches inside one TensorFlow call
            # (train_epoch). A tf.data pipeline (and distributing it) costs more per step than a
            # small network's step itself.
            def batches(epoch: int):
                order = np.random.default_rng(seed + epoch).permutation(len(X))
                return WholeEpoch(X[order], y[order])

            return batches

        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

        def batches(epoch: int):
            dataset = tf.data.Dataset.from_tensor_slices((X, y)).shuffle(len(X), seed=seed + epoch)
            dataset = dataset.batch(global_batch, drop_remainder=len(X) >= global_batch)
            return self.strategy.experimental_distribute_dataset(dataset.with_options(options))

        return batches

    def streamed_batches(self, shard):
        tf, config, settings = self.tf, self.config, self.settings
        label = self._label_dtype()
        # This worker's shard of the Ray Dataset, already split by Ray Train: no re-sharding.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF

        def as_targets(x, y):
            y = tf.cast(y, label) if label != tf.float32 else tf.cast(
                standardize(tf.cast(y, tf.float64), config.target_scale), tf.float32)
            return x, y

        def batches(epoch: int):
            dataset = shard.to_tf("x", "y", batch_size=settings.batch_size, local_shuffle_seed=config.seed + epoch,
                                  local_shuffle_buffer_size=8 * settings.batch_size)
            return self.strategy.experimental_distribute_dataset(dataset.map(as_targets).with_options(options))

        return batches

    # -- one epoch
    def train_epoch(self, batches, lr: float) -> tuple[float, int]:
        self.keras.backend.set_value(self.optimizer.learning_rate, lr)
        self.loss_sum.reset_state()
        self.loss_count.reset_state()
        if isinstance(batches, WholeEpoch):
            self._epoch(self.tf.constant(batches.X), self.tf.constant(batches.y))
            rows = len(batches.X)
            return float(self.loss_sum.result()) / max(1.0, float(self.loss_count.result())), rows
        rows = 0
        for x, y in batches:
            counted = self._step(x, y)
            rows += int(x.shape[0]) if self.world == 1 else counted  # one worker: no tensor read per step
        # Read across every replica of every worker (the metrics are summed on read).
        return float(self.loss_sum.result()) / max(1.0, float(self.loss_count.result())), int(rows)

    def predict(self, X: np.ndarray, batch: int = 1024) -> np.ndarray:
        # A direct call, not predict(): under the strategy predict() would shard the rows.
        return np.concatenate([np.asarray(self._forward(X[i:i + batch]), dtype=np.float32)
                               for i in range(0, len(X), batch)])

    # -- state
    def weights(self):
        return self.network.get_weights()

    def save(self, directory: Path, best_weights) -> None:
        save_arrays(directory / WEIGHTS, self.network.get_weights())
        save_arrays(directory / BEST_WEIGHTS, best_weights)
        save_arrays(directory / OPTIMIZER, [np.asarray(self.settings.optimizer)]
                    + [v.numpy() for v in self.optimizer.variables])

    def load(self, directory: Path):
        self.network.set_weights(load_arrays(directory / WEIGHTS))
        # The optimizer's state only: its hyperparameters stay this run's own (see adapter.py). A
        # PBT exploit may have mutated the optimizer itself: another kind's state is not this one's.
        kind, *values = load_arrays(directory / OPTIMIZER)
        variables = self.optimizer.variables
        if str(kind) == self.settings.optimizer and [v.shape for v in variables] == [a.shape for a in values]:
            for variable, value in zip(variables, values):
                variable.assign(value)
        return load_arrays(directory / BEST_WEIGHTS)
