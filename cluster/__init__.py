"""Connecting to Ray: a local session on a laptop, or a cluster; resource checks; job submission."""
