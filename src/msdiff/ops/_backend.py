"""Which backend msdiff.ops compiles for: read once, when msdiff.ops is imported.

`mindspore.get_context` cannot be called inside `mindspore.jit`, so the choice is a module
constant. Set the device target before importing msdiff (or call `refresh()` after changing it).
"""
import os
import tempfile

import mindspore as ms

DEVICE = ms.get_context("device_target")
IS_CPU = DEVICE == "CPU"
IS_ASCEND = DEVICE == "Ascend"

# A failed graph compile writes rank_0/om/analyze_fail.ir under MS_OM_PATH (default: the working directory;
# read when the dump is written): keep it out of the user's folder unless they chose a place.
os.environ.setdefault("MS_OM_PATH", os.path.join(tempfile.gettempdir(), f"msdiff-{getattr(os, 'getuid', int)()}",
                                                 "mindspore"))

# CPU group_norm: from this many elements on, BiasAdd + BatchNorm kernels on views (norm._group_norm_batchnorm)
# beat MindSpore's CPU GroupNorm kernel (fp32, best of 9 interleaved, quiet: 2x320x64x64 8.4 vs 10.8 ms,
# 1x128x256x256 24 vs 34 ms; at load ~10: 30 vs 63 ms); below it their ~1 ms of launches lose
# (2x1280x4x4 1.0 vs 0.4 ms; about even at 2x1280x8x8, 164K elements). MindSpore 2.10.
CPU_GROUP_NORM_BATCHNORM_MIN = 1 << 18


def refresh() -> str:
    """Re-read the device target after `mindspore.set_context(device_target=...)`."""
    global DEVICE, IS_CPU, IS_ASCEND
    DEVICE = ms.get_context("device_target")
    IS_CPU = DEVICE == "CPU"
    IS_ASCEND = DEVICE == "Ascend"
    return DEVICE


def check_compute_dtype(dtype) -> None:
    """ValueError if this backend cannot compute in `dtype` (MindSpore 2.10's CPU kernels store bf16 but
    do not compute in it: matmul and conv reject it)."""
    if dtype == ms.bfloat16 and IS_CPU:
        raise ValueError("dtype bfloat16 is not available on CPU: MindSpore 2.10's CPU kernels store "
                         "bf16 but do not compute in it (matmul, conv reject it); use float32 or float16")
