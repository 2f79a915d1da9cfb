"""The plain side of B2 (and B7): the training loop without Ray, in a process of its own.

Same network (built by rayfit's registry), same data, batch size, optimizer and thread count as
rayfit's loop; each epoch trains once over the shuffled training split and scores the validation
split, as rayfit's does. No checkpoints, no reports: that is the difference being measured.

    python -m bench.plain_loops torch|keras --data ARRAYS.npz --settings '{json}' --model mlp
        --epochs N --threads T [--device cuda] [--amp]

Prints one line `BENCH_RESULT {"epoch_s": [...]}` on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

RESULT_PREFIX = "BENCH_RESULT "


def torch_epochs(data, settings: dict, model_name: str, epochs: int, threads: int,
                 device: str = "cpu", amp: bool = False) -> list[float]:
    import torch
    from rayfit.trainers.core import architecture
    from rayfit.trainers.torch_models import build_torch_model
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(threads)
    device = torch.device(device)
    X_val = torch.as_tensor(data["X_val"])
    y_val = torch.as_tensor(data["y_val"], dtype=torch.float32).to(device)
    torch.manual_seed(0)
    model = build_torch_model(architecture(settings, model_name, X_val.shape[1:], 1)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])
    loss_fn = nn.BCEWithLogitsLoss()
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    generator = torch.Generator()
    loader = DataLoader(TensorDataset(torch.as_tensor(data["X_train"]),
                                      torch.as_tensor(data["y_train"], dtype=torch.float32)),
                        batch_size=settings["batch_size"], shuffle=True, generator=generator,
                        pin_memory=device.type == "cuda")
    times = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        generator.manual_seed(epoch)
        model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
                loss = loss_fn(model(xb)[:, 0], yb)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(X_val[i:i + 1024].to(device)).float() for i in range(0, len(X_val), 1024)])
            float(loss_fn(out[:, 0], y_val))
        times.append(time.perf_counter() - started)
    return times


def keras_epochs(data, settings: dict, model_name: str, epochs: int, threads: int) -> list[float]:
    import tensorflow as tf
    from rayfit.trainers.keras_models import build_keras_model
    from rayfit.trainers.core import architecture
    from tensorflow import keras

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(0)
    X_train, y_train = data["X_train"], data["y_train"].astype(np.float32).reshape(-1, 1)
    X_val, y_val = data["X_val"], data["y_val"].astype(np.float32).reshape(-1, 1)
    model = build_keras_model(architecture(settings, model_name, X_val.shape[1:], 1))
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=settings["lr"], weight_decay=settings["weight_decay"]),
                  loss=loss_fn)
    times = []
    for epoch in range(epochs):
        started = time.perf_counter()
        dataset = tf.data.Dataset.from_tensor_slices((X_train, y_train)).shuffle(len(X_train), seed=epoch)
        dataset = dataset.batch(settings["batch_size"], drop_remainder=True)
        model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        out = np.concatenate([model(X_val[i:i + 1024], training=False).numpy() for i in range(0, len(X_val), 1024)])
        float(loss_fn(y_val, out))
        times.append(time.perf_counter() - started)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="plain training loop, timed per epoch")
    parser.add_argument("framework", choices=["torch", "keras"])
    parser.add_argument("--data", required=True, help=".npz with X_train, y_train, X_val, y_val")
    parser.add_argument("--settings", required=True, help="NeuralConfig fields as JSON")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="torch autocast float16 + GradScaler (CUDA)")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    with np.load(args.data) as arrays:
        data = {k: arrays[k] for k in arrays.files}
    if args.framework == "torch":
        times = torch_epochs(data, settings, args.model, args.epochs, args.threads, args.device, args.amp)
    else:
        times = keras_epochs(data, settings, args.model, args.epochs, args.threads)
    print(RESULT_PREFIX + json.dumps({"epoch_s": times}), flush=True)
    return 0


def run_plain(framework: str, data_path, settings: dict, epochs: int, threads: int, model: str = "mlp",
              device: str = "cpu", amp: bool = False, timeout: float = 900) -> dict:
    """Run the plain loop in a fresh process (its own thread settings, nothing of Ray loaded)."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": str(threads),  # what Ray gives a worker of `threads` CPUs
           "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}  # the Keras rayfit's workers use
    command = [sys.executable, "-m", "bench.plain_loops", framework, "--data", str(data_path),
               "--settings", json.dumps(settings), "--model", model, "--epochs", str(epochs),
               "--threads", str(threads), "--device", device] + (["--amp"] if amp else [])
    from bench.paths import REPO

    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"plain {framework} loop failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


if __name__ == "__main__":
    raise SystemExit(main())
