"""The ``labrig`` command line: ``devices``, ``bench``, ``reproduce``."""
