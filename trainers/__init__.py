"""Ray Train: one training loop per framework, networks from registries."""
