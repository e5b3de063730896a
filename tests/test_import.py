import msdiff
import msdiff.ops


def test_ops_import_lists_the_op_set():
    for name in ("group_norm", "layer_norm", "softmax_bmm_attention", "attention", "conv2d", "linear",
                 "timestep_embedding", "silu", "gelu", "geglu", "interpolate", "pad"):
        assert callable(getattr(msdiff.ops, name)), name
    assert msdiff.__version__
