"""The distributed executor of every sweep (executor.py) and the driver's result cache (cache.py)."""
