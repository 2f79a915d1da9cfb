"""rayfit: distributed training on Ray, from a data file or a DataFrame to an evaluation report.

    import rayfit
    run = rayfit.run(data=frame, target="label")   # or rayfit.run("examples/quickstart.yaml")
    run.leaderboard(); run.best_model.predict(rows)

`run`, `resume`, `load`, `submit` and the `Run` they return live in rayfit/api.py; they are imported
when first used, so that `import rayfit` stays cheap. Bad input raises `UserError`, whose message is
what the CLI prints after `error:`.
"""
import os as _os

# Keras 3 fails under MultiWorkerMirroredStrategy (keras-team/keras#20585); tf-keras works.
# The choice is fixed when TensorFlow is first imported, so it is made here, before anything can.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from rayfit.errors import Interrupted, UserError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["run", "resume", "load", "submit", "Run", "FittedModel", "Job", "UserError", "Interrupted"]
_API = {"run", "resume", "load", "submit", "Run", "FittedModel", "Job"}


def __getattr__(name: str):
    if name in _API:
        from rayfit import api

        return getattr(api, name)
    raise AttributeError(f"module 'rayfit' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API)
