"""How rows become train, validation and test: every split method rayfit uses, in one place.

- `split_rows`: the rows held on the driver, shuffled with a seed and stratified by the class when
  asked; sizes are whole numbers, so 1,000 rows give exactly 700/150/150.
- `chronological_ranges`: a time series, in file order (no shuffling: the future never trains).
- `HashSplit`: a table prepared on the cluster, block by block: each row's split comes from a seeded
  hash of its values, so a row lands in the same split whatever block it is read in. No stratifying:
  that would need every row's class in one place first.

`check_split` says before anything starts whether the rows can make the split at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from rayfit.config import DataConfig
from rayfit.data.prepared import SPLITS, Split
from rayfit.errors import UserError

MIN_ROWS = 20  # below this, a three-way split leaves nothing to learn or judge from
MIN_ROWS_PER_CLASS = 3  # a stratified split puts at least one row of each class in each part


def split_label(cfg: DataConfig) -> str:
    """The fractions as the user reads them: 70/15/15; 85/15 train/val with a test file of its own."""
    if cfg.test:
        return f"{(1 - cfg.split.val) * 100:g}/{cfg.split.val * 100:g} train/val"
    return "/".join(f"{fraction * 100:g}" for fraction in (cfg.split.train, cfg.split.val, cfg.split.test))


def split_sizes(n: int, cfg: DataConfig) -> dict[str, int]:
    """Each part's rows out of `n`. With a test file (data.test) every row trains or validates: the
    validation share is of these rows, and the test part comes from the file."""
    sizes = {"test": 0 if cfg.test else round(n * cfg.split.test), "val": round(n * cfg.split.val)}
    return {"train": n - sizes["test"] - sizes["val"], **sizes}


def held_out_parts(cfg: DataConfig) -> tuple[str, ...]:
    """The parts split off the source's rows."""
    return ("train", "val") if cfg.test else SPLITS


def check_enough_rows(n: int, cfg: DataConfig) -> None:
    if n < MIN_ROWS:
        raise UserError(f"too few rows for a {split_label(cfg)} split: {n} rows after cleaning "
                        f"(need at least {MIN_ROWS})")


def check_split(n: int, y: np.ndarray, cfg: DataConfig, stratified: bool, n_classes: int) -> None:
    """Whether `n` rows with these classes can make the configured split."""
    label = f"{split_label(cfg)}{' stratified' if stratified else ''} split"
    if stratified:
        counts = np.bincount(y, minlength=n_classes)
        if counts.min() < MIN_ROWS_PER_CLASS:
            raise UserError(f"too few rows for a {label}: the smallest class has {counts.min()} row(s) "
                            f"(need at least {MIN_ROWS_PER_CLASS} per class)")
    for part, size in split_sizes(n, cfg).items():
        if part not in held_out_parts(cfg):
            continue
        if size < 1 or (stratified and size < n_classes):
            need = f"at least {n_classes} for {n_classes} classes" if stratified else "at least 1"
            raise UserError(f"too few rows for a {label}: {n} rows after cleaning give the {part} split "
                            f"{size} rows (need {need})")


def split_rows(n: int, y: np.ndarray, cfg: DataConfig, seed: int, stratified: bool,
               log: list[str]) -> tuple[dict[str, np.ndarray], Split]:
    """Row positions of train, val and test (check_split has passed), and how they were made."""
    sizes = split_sizes(n, cfg)
    rows = np.arange(n)
    try:
        if sizes["test"]:
            rest, test = train_test_split(rows, test_size=sizes["test"], random_state=seed,
                                          stratify=y if stratified else None)
        else:  # the test rows come from a file of their own
            rest, test = rows, rows[:0]
        train, val = train_test_split(rest, test_size=sizes["val"], random_state=seed,
                                      stratify=y[rest] if stratified else None)
    except ValueError as exc:
        raise UserError(f"cannot make a {split_label(cfg)} split of {n} rows: {str(exc).splitlines()[0]}") from None
    how = ", stratified by the target" if stratified else ""
    if cfg.test:
        log.append(f"split {n} rows into {len(train)}/{len(val)} (train/val{how}, seed {seed}); "
                   f"the test rows are the test file's")
    else:
        log.append(f"split {n} rows into {len(train)}/{len(val)}/{len(test)} (train/val/test{how}, seed {seed})")
    parts = {"train": train, "val": val, "test": test}
    return parts, Split("stratified" if stratified else "random", {p: len(parts[p]) for p in SPLITS}, seed)


def chronological_ranges(n: int, cfg: DataConfig) -> dict[str, range]:
    """Contiguous row ranges in file order: the earliest rows train, then val, then test."""
    ranges, start, sizes = {}, 0, split_sizes(n, cfg)
    for part in SPLITS:
        ranges[part] = range(start, start + sizes[part])
        start += sizes[part]
    return ranges


@dataclass(frozen=True)
class HashSplit:
    """A seeded hash of each row's values places it in [0, 1); where each split and each split's
    driver sample lie in that interval."""

    seed: int
    ends: tuple[float, float, float]
    sample_ends: tuple[float, float, float]

    @classmethod
    def of(cls, cfg: DataConfig, rows: int, seed: int) -> "HashSplit":
        fractions = (cfg.split.train, cfg.split.val, cfg.split.test)
        starts = (0.0, fractions[0], fractions[0] + fractions[1])
        ends = (fractions[0], fractions[0] + fractions[1], 1.0)
        sample_ends = tuple(start + f * min(1.0, cfg.driver_rows / max(1.0, f * rows))
                            for start, f in zip(starts, fractions))
        return cls(seed, ends, sample_ends)

    def positions(self, block: pd.DataFrame) -> np.ndarray:
        """Each row's place in [0, 1), whichever block it is read in."""
        key = f"rayfit{self.seed % 10**10:010d}"  # pandas wants 16 characters
        hashes = pd.util.hash_pandas_object(block, index=False, hash_key=key).to_numpy()
        return (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)

    def split_of(self, u: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.ends[:2]), u, side="right")  # 0 train, 1 val, 2 test

    def in_sample(self, u: np.ndarray, split: np.ndarray) -> np.ndarray:
        return u < np.asarray(self.sample_ends)[split]
