"""Query-chunked attention at the 64x64-latent self-attention shape equals the unchunked result."""
import numpy as np
from mindspore import Tensor

from msdiff import ops


def test_chunked_4096_tokens_equals_unchunked():
    rng = np.random.default_rng(3)
    b, h, n, d = 2, 8, 4096, 40
    q, k, v = (Tensor(rng.standard_normal((b, h, n, d)).astype(np.float32)) for _ in range(3))
    chunked = ops.attention(q, k, v, chunk_size=1024)
    assert chunked.shape == (b, h, n, d)
    out = chunked.asnumpy()
    assert np.isfinite(out).all()
    # Unchunked on two (batch, head) slices only: the full [2, 8, 4096, 4096] fp32 score tensor is 1 GiB.
    for bi, hi in ((0, 0), (1, 7)):
        full = ops.softmax_bmm_attention(q[bi:bi + 1, hi:hi + 1], k[bi:bi + 1, hi:hi + 1], v[bi:bi + 1, hi:hi + 1])
        np.testing.assert_allclose(out[bi:bi + 1, hi:hi + 1], full.asnumpy(), rtol=0, atol=1e-6)


def test_chunked_per_query_masks_equal_unchunked():
    """The chunks take their query rows (and a per-query mask's rows) by Gather: float [n, m] and bool [b, 1, n, m]."""
    rng = np.random.default_rng(5)
    q = Tensor(rng.standard_normal((2, 3, 10, 4)).astype(np.float32))
    k, v = (Tensor(rng.standard_normal((2, 3, 7, 4)).astype(np.float32)) for _ in range(2))
    masks = [Tensor(rng.standard_normal((10, 7)).astype(np.float32)),
             Tensor(np.concatenate([np.ones((2, 1, 10, 1), bool), rng.random((2, 1, 10, 6)) > 0.5], -1))]
    for mask in masks:
        full = ops.softmax_bmm_attention(q, k, v, mask=mask).asnumpy()
        chunked = ops.softmax_bmm_attention(q, k, v, mask=mask, chunk_size=3).asnumpy()
        np.testing.assert_allclose(chunked, full, rtol=0, atol=1e-6)
