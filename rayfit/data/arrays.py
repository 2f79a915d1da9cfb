"""Image and sequence sources as arrays: which kind a source is, reading it, and per-channel scaling.

Sources: `digits` as 8x8 images (data.kind: image), the built-in `sequences`, an .npz file of `x`
and `y`, and a folder with one subfolder of images per class.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from rayfit.data.builtin import BUILTIN, BUILTIN_ARRAYS
from rayfit.errors import UserError

NPZ_SUFFIXES = (".npz",)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_SINGLE_CHANNEL_MODES = ("1", "L", "I", "I;16", "F")  # Pillow modes with one grey band


@dataclass
class Examples:
    """Raw examples before the split: x is (N, H, W, C) images or (N, T, F) sequences."""

    x: np.ndarray
    labels: np.ndarray  # one raw label per example: class names or numbers
    kind: str  # "image" | "sequence"
    target: str  # what the labels are called in messages and reports
    channel_names: list[str]
    description: str  # one log line: what was loaded from where


def resolve_kind(cfg) -> tuple[str, str]:
    """(the kind of example to make, the source's own kind), data.kind checked against the source.

    They differ for `digits` read as images, and for a table read as a time series to cut into windows.
    """
    natural, allowed, what = _kinds_of(cfg)
    if cfg.kind == "auto":
        return natural, natural
    if cfg.kind not in allowed:
        raise UserError(f"data.kind: {cfg.kind} does not fit {cfg.source} ({what}); "
                        f"use {' or '.join(allowed)} (or auto)")
    return cfg.kind, natural


def _kinds_of(cfg) -> tuple[str, tuple[str, ...], str]:
    """(the source's own kind, the kinds data.kind may ask for, what the source is in words)."""
    source = cfg.source
    if source in BUILTIN_ARRAYS:
        return "sequence", ("sequence",), "a built-in sequence set"
    if source == "digits":
        return "tabular", ("tabular", "image"), "a built-in set of 8x8 images"
    if source in BUILTIN:
        return "tabular", ("tabular",), "a built-in table"
    path = Path(source)
    if path.suffix.lower() in NPZ_SUFFIXES:
        x, _ = read_npz(path)
        if x.ndim == 4:
            return "image", ("image",), "4-D x: images"
        if x.ndim == 3:
            return "sequence", ("sequence", "image"), "3-D x: sequences, or grayscale images"
        return "tabular", ("tabular",), "2-D x: a table"
    if path.is_dir() and not any(p.suffix.lower() in TABLE_SUFFIXES for p in path.iterdir()):
        return "image", ("image",), "a folder of images"
    # Tables, and whatever load_table will reject with its own message.
    return "tabular", ("tabular", "sequence"), "a table"


def load_examples(cfg, kind: str) -> Examples:
    if cfg.source == "digits":
        return _digit_images()
    if cfg.source in BUILTIN_ARRAYS:
        x, labels = BUILTIN_ARRAYS[cfg.source]()
        return Examples(x, labels, "sequence", "label", [f"f{i}" for i in range(x.shape[2])],
                        f"loaded {len(x)} sequences of {x.shape[1]} steps x {x.shape[2]} channels "
                        f"from {cfg.source}")
    path = Path(cfg.source)
    if path.is_dir():
        return read_image_folder(path, cfg.image_size)
    x, y = read_npz(path)
    if kind == "image" and x.ndim == 3:
        x = x[..., np.newaxis]  # (N, H, W) grayscale
    if kind == "image":
        return Examples(x, y, "image", "y", image_channel_names(x.shape[3]),
                        f"loaded {len(x)} {_image_words(x)} images from {path}")
    return Examples(x, y, "sequence", "y", [f"f{i}" for i in range(x.shape[2])],
                    f"loaded {len(x)} sequences of {x.shape[1]} steps x {x.shape[2]} channels from {path}")


def image_channel_names(channels: int) -> list[str]:
    return ["intensity"] if channels == 1 else [f"c{i}" for i in range(channels)]


def _image_words(x: np.ndarray) -> str:
    height, width, channels = x.shape[1:]
    return f"{height}x{width} " + ("grayscale" if channels == 1 else f"{channels}-channel")


def _digit_images() -> Examples:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images[..., np.newaxis].astype(np.float32)  # (1797, 8, 8, 1), pixel values 0..16
    return Examples(x, bunch.target, "image", "target", image_channel_names(1),
                    f"loaded {len(x)} {_image_words(x)} images ({len(bunch.target_names)} classes) from digits")


# -- .npz files ------------------------------------------------------------------------------------

def read_npz(path, need_y: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Arrays `x` (examples first) and `y` (one label each) from an .npz file; `y` only when needed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            wanted = ("x", "y") if need_y else ("x",)
            missing = [key for key in wanted if key not in arrays.files]
            if missing:
                raise UserError(f"{path}: an .npz data file needs arrays {' and '.join(map(repr, wanted))}; "
                                f"missing {', '.join(map(repr, missing))} (found: {', '.join(arrays.files) or 'none'})")
            x = arrays["x"]
            y = arrays["y"] if "y" in arrays.files else None
    except (ValueError, OSError) as exc:
        # Object arrays need pickle, which could run code from the file: refuse them.
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"could not read data file {path}: {reason}") from None
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or x.ndim < 2:
        raise UserError(f"{path}: 'x' must be a numeric array with examples first, got {x.dtype} of shape {x.shape}")
    if y is not None:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(x):
            raise UserError(f"{path}: 'y' must hold one label per example of 'x': 'x' has {len(x)} examples, "
                            f"'y' has shape {y.shape}")
    return x, y


def npz_frame(path) -> pd.DataFrame:
    """A 2-D `x` (and `y` when present) as a table with columns f0, f1, ... and y."""
    x, y = read_npz(path, need_y=False)
    if x.ndim != 2:
        raise UserError(f"{path}: a table needs a 2-D 'x', got shape {x.shape}")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
    if y is not None:
        frame["y"] = y
    return frame


# -- image folders ---------------------------------------------------------------------------------

def read_image_folder(root: Path, size: Optional[tuple[int, int]]) -> Examples:
    """One subfolder per class (sorted names); grayscale when every image is, else RGB."""
    from PIL import Image, UnidentifiedImageError

    files = [(folder.name, file) for folder in sorted(p for p in root.iterdir() if p.is_dir())
             for file in sorted(folder.iterdir()) if file.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"{root}: no images found; put the images of each class in their own subfolder "
                        f"({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for _, file in files:
        try:
            with Image.open(file) as image:
                image.load()
                images.append(image)
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"could not read image {file}: {exc}") from None
    mode = "L" if all(image.mode in _SINGLE_CHANNEL_MODES for image in images) else "RGB"
    height, width = size or (images[0].height, images[0].width)
    pixels = [np.asarray(image.convert(mode).resize((width, height)), dtype=np.float32) for image in images]
    x = np.stack(pixels)
    x = x[..., np.newaxis] if mode == "L" else x
    labels = np.asarray([label for label, _ in files])
    resized = f", resized to {height}x{width}" if size else ""
    return Examples(x, labels, "image", "class", image_channel_names(x.shape[3]),
                    f"loaded {len(x)} {_image_words(x)} images ({len(set(labels))} classes) from {root}{resized}")


# -- scaling ---------------------------------------------------------------------------------------

class ChannelStandardizer(TransformerMixin, BaseEstimator):
    """Per-channel (last axis) mean and std, over every example, pixel and time step of the fit data."""

    def fit(self, X: np.ndarray, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.input_shape_ = tuple(X.shape[1:])
        flat = X.reshape(-1, X.shape[-1])
        self.mean_ = flat.mean(axis=0)
        std = flat.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)  # a constant channel stays constant, not NaN
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "mean_")
        X = np.asarray(X)
        if X.shape[1:] == self.input_shape_[:-1] and self.input_shape_[-1] == 1:
            X = X[..., np.newaxis]  # grayscale images given without their channel axis
        if X.shape[1:] != self.input_shape_:
            raise UserError(f"expected examples of shape {self.input_shape_}, got {tuple(X.shape[1:])}")
        return ((X - self.mean_) / self.scale_).astype(np.float32)
