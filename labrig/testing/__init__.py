"""Hypothesis strategies and state machines for testing drivers and runtimes against the
device models (public API; STYLE.md section 6)."""

__all__: list[str] = []
