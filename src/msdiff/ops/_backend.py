"""Which backend msdiff.ops compiles for: read once, when msdiff.ops is imported.

`mindspore.get_context` cannot be called inside `mindspore.jit`, so the choice is a module
constant. Set the device target before importing msdiff (or call `refresh()` after changing it).
"""
import mindspore as ms

DEVICE = ms.get_context("device_target")
IS_CPU = DEVICE == "CPU"
IS_ASCEND = DEVICE == "Ascend"

# CPU group_norm: from this many elements on, BatchNorm kernels (centre, normalise, per-channel affine) beat
# MindSpore's CPU GroupNorm kernel (2x320x64x64: 7.3 vs 21.4 ms; 2x320x32x32: 3.1 vs 5.3 ms); below it,
# their fixed per-launch cost loses (2x1280x4x4: 1.0 vs 0.4 ms). Measured best of 5, MindSpore 2.10.
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
