"""A trained network held by the workers that have its framework imported, not by the driver.

The driver of a run needs a network's outputs (validation and test scores, predictions), its saved
directory (the run's record, the exported model) and its TorchScript / ONNX exports, never the
network itself. Loading it there cost the driver an import of PyTorch (about 1.5 s of a core) and
of TensorFlow (about 4 s) on the cores the models were training on. A `NetworkOnWorkers` is the
network as `model_to_bytes` saves it, with its manifest; its outputs and exports are computed by
tasks in its framework's warm pool (cluster/launch.py), each worker loading it once
(`_loaded`). Saving it writes the archive's files: no framework is needed for that.

The ArrayModel interface is the same: evaluation, importance and export never ask where a model's
computations run, except that a permutation-importance job goes to the model's pool as a whole
(`in_process` is False) instead of one remote call per feature.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from rayfit.evaluation.fitted import ArrayModel, model_from_bytes, model_to_bytes, pack_dir, unpack_dir

_CACHED_MODELS = 4  # the networks a worker keeps loaded (a run has a few: mlp, tuned, ...)
_loaded: "OrderedDict[str, ArrayModel]" = OrderedDict()  # in a worker: digest -> the loaded network


class NetworkOnWorkers(ArrayModel):
    in_process = False

    def __init__(self, name: str, task: str, framework: str, saved: bytes):
        super().__init__(name, task)
        self.kind = framework
        self.saved = saved  # model_to_bytes's archive: the model directory with its manifest
        self.digest = hashlib.sha256(saved).hexdigest()
        self._ref = None  # the archive in Ray's object store, put at the first remote call
        self._outputs: dict[str, np.ndarray] = {}  # an input's digest -> its outputs (val and test, asked often)

    def __getstate__(self):
        return {**self.__dict__, "_ref": None, "_outputs": {}}

    def _raw_predict(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float32)
        key = hashlib.sha256(X.view(np.uint8).reshape(-1)).hexdigest() + str(X.shape)
        if key not in self._outputs:
            self._outputs[key] = self._call(_outputs_task, X)
        return self._outputs[key]

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="rayfit-model-") as tmp:
            unpacked = unpack_dir(self.saved, Path(tmp))
            (unpacked / "MANIFEST.json").unlink(missing_ok=True)  # the caller writes the directory's own
            for path in unpacked.iterdir():
                shutil.move(str(path), directory / path.name)
        return directory

    def export_files(self, directory: Path, example) -> tuple[list[str], list[str]]:
        written, failed, files = self._call(_exports_task, example)
        for name, content in files.items():
            (Path(directory) / name).write_bytes(content)
        return written, failed

    def _call(self, fn, *args):
        import ray

        from rayfit.cluster.launch import start

        if self._ref is None:
            self._ref = ray.put(self.saved)
        # No CPU of its own: the driver's share of the work, as when the driver computed it.
        return start(fn, self._ref, self.digest, *args, name=f"rayfit.network[{self.name}]", cpus=0,
                     pool=self.kind).result()


def held_network(framework: str, name: str, task: str, saved: bytes) -> ArrayModel:
    """A trained network from its saved archive: held by its framework's workers where Ray keeps
    them warm (a private Ray: cluster/session.py's keeps_idle_workers), else loaded here, as a
    joined cluster may stop an idle worker within a second and each call would import the framework
    again."""
    from rayfit.cluster.session import keeps_idle_workers

    return NetworkOnWorkers(name, task, framework, saved) if keeps_idle_workers() else model_from_bytes(saved)


def network_from_checkpoint(framework: str, directory: Path, name: str, task: str, best: bool) -> ArrayModel:
    """The network of a checkpoint directory in this process (a worker group's, a Tune trial's):
    made into its saved archive by a task of its framework's pool and held there (`held_network`),
    or loaded here where Ray does not keep idle workers warm."""
    import ray

    from rayfit.cluster.launch import start
    from rayfit.cluster.session import keeps_idle_workers

    if not keeps_idle_workers():
        from rayfit.trainers.launch import load_checkpoint

        return load_checkpoint(framework, Path(directory), name, task, best)[0]
    blob = pack_dir(Path(directory))
    saved = start(_saved_task, ray.put(blob), framework, name, task, best, name=f"rayfit.network[{name}]", cpus=0,
                  pool=framework).result()
    return NetworkOnWorkers(name, task, framework, saved)


def saved_network(framework: str, directory: Path, name: str, task: str, best: bool) -> bytes:
    """In a worker that has the framework: a checkpoint's network as `model_to_bytes`'s archive."""
    from rayfit.trainers.launch import load_checkpoint

    model, _, _ = load_checkpoint(framework, Path(directory), name, task, best)
    return model_to_bytes(model)


# -- in the framework's workers

def _network(blob: bytes, digest: str) -> ArrayModel:
    model = _loaded.pop(digest, None) or model_from_bytes(blob)
    _loaded[digest] = model
    while len(_loaded) > _CACHED_MODELS:
        _loaded.popitem(last=False)
    return model


def _outputs_task(blob: bytes, digest: str, X: np.ndarray) -> np.ndarray:
    return _network(blob, digest).outputs(X)


def _exports_task(blob: bytes, digest: str, example) -> tuple[list[str], list[str], dict[str, bytes]]:
    from rayfit.evaluation.export import framework_exports

    with tempfile.TemporaryDirectory(prefix="rayfit-export-") as tmp:
        written, failed = framework_exports(_network(blob, digest), Path(tmp), example)
        return written, failed, {name: (Path(tmp) / name).read_bytes() for name in written}


def _saved_task(blob: bytes, framework: str, name: str, task: str, best: bool) -> bytes:
    with tempfile.TemporaryDirectory(prefix="rayfit-checkpoint-") as tmp:
        return saved_network(framework, unpack_dir(blob, Path(tmp)), name, task, best)

