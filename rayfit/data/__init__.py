"""Data: a source -> checked (`check`) -> cleaned, split, preprocessed parts (`prepare`), and the
preprocessing to reuse."""
from rayfit.data.builtin import BUILTIN
from rayfit.data.load import load_table
from rayfit.data.prepare import Source, check, prepare
from rayfit.data.prepared import Prepared

__all__ = ["BUILTIN", "Prepared", "Source", "check", "load_table", "prepare"]
