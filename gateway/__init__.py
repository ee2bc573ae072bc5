"""hookgate gateway: the HTTP API, the Redis store and the command line."""

__version__ = "0.1.0"
