"""Data: a source -> cleaned, split, preprocessed arrays (`prepare`), and the preprocessing to reuse."""
from rayfit.data.builtin import BUILTIN
from rayfit.data.load import load_table
from rayfit.data.prepare import Prepared, prepare

__all__ = ["BUILTIN", "Prepared", "load_table", "prepare"]
