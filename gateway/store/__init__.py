"""The Redis store: key names, the Lua scripts and their arguments, the arq queue boundary,
ingest, recovery. Imports only ``gateway.core``."""
