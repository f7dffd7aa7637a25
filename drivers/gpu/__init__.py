"""GPU device driver: the two services a communication runtime needs from a GPU (issue #8,
FuseLink) -- device memory a NIC can reach, and asynchronous peer copies over NVLink/PCIe
(``cudaMallocAsync`` / ``cudaMemcpyPeerAsync`` shaped), reaped poll-mode like verbs CQs.

Runtimes import this interface only; an experiment builds the backend and hands it over
(DESIGN.md "Layers").  Backend ``emu`` (:class:`EmuGpu`) wraps the fabric's GPU model
(:class:`labrig.hw.fabric.gpu.Gpu`), whose copies are flows over the topology's links.
"""

from labrig.drivers.gpu._api import CopyCompletion, GpuDevice
from labrig.drivers.gpu._emu import EmuGpu

__all__ = ["CopyCompletion", "EmuGpu", "GpuDevice"]
