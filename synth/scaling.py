"""Moved to studies/scaling.py; this alias goes after one release (studies/_moved.py)."""
from studies._moved import alias

alias(globals(), "studies.scaling")
