"""WaferLLM's kernels (OSDI'25) on the mesh driver: MeshGEMM, Cannon, SUMMA, dist-GEMM-T,
MeshGEMV with the K-tree allreduce and its pipeline/ring baselines.

Every kernel takes a :class:`labrig.drivers.mesh.MeshRuntime` (the caller builds the device)
and returns a :class:`KernelResult` with the output and the launch cycles.

Examples
--------
>>> import numpy as np
>>> from labrig.hw import Platform
>>> from labrig.hw.mesh import MeshConfig, MeshDevice
>>> from labrig.drivers.mesh import MeshRuntime
>>> rt = MeshRuntime(MeshDevice(Platform(seed=0), MeshConfig(4, 4)))
>>> a = np.arange(64, dtype=np.float32).reshape(8, 8); b = np.eye(8, dtype=np.float32)
>>> bool(np.array_equal(mesh_gemm(rt, a, b).out, a @ b))
True
"""

from labrig.runtime.waferllm._gemm_t import gemm_t
from labrig.runtime.waferllm._gemv import ALLREDUCES, mesh_gemv
from labrig.runtime.waferllm._result import KernelResult
from labrig.runtime.waferllm._rings import ring_messages, ring_order
from labrig.runtime.waferllm._shift_gemm import cannon_gemm, mesh_gemm
from labrig.runtime.waferllm._summa import summa_gemm

__all__ = ["ALLREDUCES", "KernelResult", "cannon_gemm", "gemm_t", "mesh_gemm", "mesh_gemv",
           "ring_messages", "ring_order", "summa_gemm"]
