"""rayfit: distributed training on Ray, from a data file to an evaluation report."""
import os as _os

# Keras 3 fails under MultiWorkerMirroredStrategy (keras-team/keras#20585); tf-keras works.
# The choice is fixed when TensorFlow is first imported, so it is made here, before anything can.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
