"""Real cache maintenance and 8-byte atomics in C, compiled with cffi (API mode) at first use.

x86-64 only: ``clflushopt``/``clwb`` (when CPUID leaf 7 reports them; otherwise ``clflush``,
which is also correct but serializing), ``sfence``/``mfence`` and GCC ``__atomic`` builtins.
On other architectures (aarch64 would need ``dc civac``/``dc cvac`` + ``dmb``), the backend
reports :class:`BackendUnavailable` rather than run without real flushes.  The module is
built once per user by :func:`labrig.cbuild.build_module` into the ``cxl`` cache area,
under a file lock so concurrent processes don't race.
"""

from __future__ import annotations

import platform
from types import ModuleType

from labrig.cbuild import build_module
from labrig.errors import BackendUnavailable

__all__ = ["load_cflush"]

_CDEF = """
int labrig_cpu_flags(void);
void labrig_flush(char *p, size_t n, int mode);
void labrig_sfence(void);
void labrig_mfence(void);
uint64_t labrig_cas64(uint64_t *p, uint64_t expected, uint64_t desired);
uint64_t labrig_fetch_add64(uint64_t *p, uint64_t v);
uint64_t labrig_load64(uint64_t *p);
void labrig_store64(uint64_t *p, uint64_t v);
"""

_SRC = r"""
#include <stdint.h>
#include <stddef.h>
#include <cpuid.h>
/* bit 0: clflushopt, bit 1: clwb (CPUID.(EAX=7,ECX=0):EBX bits 23 and 24) */
int labrig_cpu_flags(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return ((b >> 23) & 1) | (((b >> 24) & 1) << 1);
}
/* mode 0: clflush, 1: clflushopt, 2: clwb */
void labrig_flush(char *p, size_t n, int mode) {
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)63, end = (uintptr_t)p + n;
    for (; a < end; a += 64) {
        if (mode == 1) __asm__ volatile("clflushopt %0" : "+m"(*(volatile char *)a));
        else if (mode == 2) __asm__ volatile("clwb %0" : "+m"(*(volatile char *)a));
        else __asm__ volatile("clflush %0" : "+m"(*(volatile char *)a));
    }
}
void labrig_sfence(void) { __asm__ volatile("sfence" ::: "memory"); }
void labrig_mfence(void) { __asm__ volatile("mfence" ::: "memory"); }
uint64_t labrig_cas64(uint64_t *p, uint64_t expected, uint64_t desired) {
    __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return expected;
}
uint64_t labrig_fetch_add64(uint64_t *p, uint64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
uint64_t labrig_load64(uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
void labrig_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
"""

_loaded: ModuleType | None = None
_error: str | None = None


def load_cflush() -> ModuleType:
    """The compiled module (``.ffi``, ``.lib``); builds it on first use.

    Raises
    ------
    BackendUnavailable
        Not x86-64, cffi or a C compiler missing, or the build failed (reason says which).
    """
    global _loaded, _error
    if _loaded is not None:
        return _loaded
    if _error is not None:
        raise BackendUnavailable("shm", _error)
    arch = platform.machine().lower()
    try:
        if arch not in ("x86_64", "amd64"):
            raise BackendUnavailable("shm",
                                     f"architecture {arch}: clflushopt/clwb need x86-64")
        _loaded = build_module("cxl", "_labrig_cxl", _CDEF, _SRC, backend="shm")
    except BackendUnavailable as exc:
        _error = exc.reason
        raise
    return _loaded
