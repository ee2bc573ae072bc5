"""The ``hookgate`` command: serve, worker, dev and the operator commands; dev tooling."""
