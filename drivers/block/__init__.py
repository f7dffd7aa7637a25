"""Block devices: the interface runtimes use, and the device-string registry of backends."""

from labrig.drivers.block._interface import (
    BlockDevice,
    BlockQPair,
    IoBuffer,
    IoKind,
    IoRequest,
    iter_lbas,
)
from labrig.drivers.block._registry import (
    BackendInfo,
    DeviceString,
    available_backends,
    open_block_device,
    parse_device_string,
    parse_size,
    register_backend,
)

__all__ = [
    "BackendInfo",
    "BlockDevice",
    "BlockQPair",
    "DeviceString",
    "IoBuffer",
    "IoKind",
    "IoRequest",
    "available_backends",
    "iter_lbas",
    "open_block_device",
    "parse_device_string",
    "parse_size",
    "register_backend",
]
