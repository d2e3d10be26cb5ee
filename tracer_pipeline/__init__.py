"""Trace what happens when generative models feed each other."""

__version__ = "0.1.0"
