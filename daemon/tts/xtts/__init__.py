"""XTTS-v2 voice cloning: the daemon side (engine, worker client) and the worker process."""
