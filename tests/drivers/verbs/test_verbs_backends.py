"""Backend selection: the pyverbs shim's enum-module handling (rdma-core v58 ``enums`` vs v59
``libibverbs_enums``) and the reason reported when pyverbs cannot run here."""

from __future__ import annotations

import sys
import types
from enum import IntEnum

import pytest

from labrig.drivers.verbs import IBV_WR_RDMA_WRITE, Context, available_backends
from labrig.drivers.verbs import _pyverbs
from labrig.errors import BackendUnavailable


def _install_stub_pyverbs(monkeypatch, *, new_enums: bool):
    """Module objects named like pyverbs' so the import logic can be exercised (they hold no
    behaviour: no device is opened through them)."""
    root = types.ModuleType("pyverbs")
    root.__path__ = []
    names = ["addr", "cq", "device", "mr", "pd", "qp", "wr", "pyverbs_error"]
    names.append("libibverbs_enums" if new_enums else "enums")
    for n in names:
        mod = types.ModuleType(f"pyverbs.{n}")
        monkeypatch.setitem(sys.modules, f"pyverbs.{n}", mod)
        setattr(root, n, mod)
    sys.modules["pyverbs.pyverbs_error"].PyverbsError = type("PyverbsError", (Exception,), {})
    if new_enums:
        class ibv_wr_opcode(IntEnum):
            IBV_WR_RDMA_WRITE = 0
        sys.modules["pyverbs.libibverbs_enums"].ibv_wr_opcode = ibv_wr_opcode
    else:
        sys.modules["pyverbs.enums"].IBV_WR_RDMA_WRITE = 0
    monkeypatch.setitem(sys.modules, "pyverbs", root)
    monkeypatch.setattr(_pyverbs, "_MODS", None)


@pytest.mark.parametrize("new_enums,style", [(True, "libibverbs_enums"), (False, "enums")])
def test_enum_module_rename_is_handled(monkeypatch, new_enums, style):
    _install_stub_pyverbs(monkeypatch, new_enums=new_enums)
    m = _pyverbs.load()
    assert m.style == style
    v = _pyverbs._enum(m, "ibv_wr_opcode", IBV_WR_RDMA_WRITE)
    assert int(v) == 0
    assert (type(v).__name__ == "ibv_wr_opcode") == new_enums
    monkeypatch.setattr(_pyverbs, "_MODS", None)


def test_pyverbs_unavailable_is_reported_with_a_reason():
    reason = available_backends()["pyverbs"]
    if reason is None:
        pytest.skip("an RDMA device opens here: pyverbs is available")
    assert isinstance(reason, str) and reason
    with pytest.raises(BackendUnavailable) as exc:
        Context(name="rdma:mlx5_0")
    assert exc.value.backend == "pyverbs" and exc.value.reason


def test_emu_is_always_available():
    assert available_backends()["emu"] is None
    ctx = Context(name="emu:nicX")
    assert ctx.backend == "emu" and ctx.name == "nicX" and ctx.platform is not None
    ctx.close()
