"""Which verbs backends can run here, with the reason when one cannot (for ``labrig
devices`` and for tests that skip)."""

from __future__ import annotations

__all__ = ["available_backends"]


def available_backends() -> dict[str, str | None]:
    """``{"emu": None, "pyverbs": None or the reason it cannot run}``."""
    from labrig.drivers.verbs._pyverbs import available
    return {"emu": None, "pyverbs": available()}
