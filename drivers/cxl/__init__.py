"""CXL memory family (labrig.drivers.cxl): the :class:`CxlMemory` interface and its backends.

- :func:`open_cxl` -- ``emu:cxl``, ``shm:NAME``, ``/dev/daxX.Y``
- :class:`CxlMemdev` -- register driver: enumeration, mailbox, HDM decoder commit
- :func:`describe_backends` -- what ``labrig devices`` prints
"""

from labrig.drivers.cxl._interface import CxlHost, CxlMemory
from labrig.drivers.cxl._registry import describe_backends, open_cxl
from labrig.drivers.cxl.emu import EmuCxlMemory, open_emu
from labrig.drivers.cxl.memdev import CxlMemdev
from labrig.drivers.cxl.real import RealCxlMemory, open_dax, open_shm, unlink_shm

__all__ = ["CxlHost", "CxlMemdev", "CxlMemory", "EmuCxlMemory", "RealCxlMemory",
           "describe_backends", "open_cxl", "open_dax", "open_emu", "open_shm", "unlink_shm"]
