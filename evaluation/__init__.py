"""Baselines, metrics, feature importance, plots and the evaluation report."""
