"""Ray Tune: search spaces, schedulers and searches over rayfit's models."""
