"""SOP: the verified operations kernel."""

__version__ = "0.1.0"
