"""Graph-mode robustness: failed compiles leave the working directory clean; oversized chunked attention is refused."""
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest

from msdiff import ops

_FAILING = """
import mindspore as ms, numpy as np
import msdiff.ops  # every net and recipe imports it
def f(x):
    return x + undefined_name(x)
try:
    ms.jit(f)(ms.Tensor(np.ones((2,), np.float32)))
except NameError:
    print("failed as expected")
"""


def test_failed_compile_leaves_cwd_clean(tmp_path):
    script, cwd = tmp_path / "failing.py", tmp_path / "work"
    script.write_text(_FAILING)  # mindspore.jit reads the source from disk
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MS_OM_PATH"}
    out = subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert "failed as expected" in out.stdout, out.stderr[-2000:]
    assert list(cwd.iterdir()) == []


def test_too_many_attention_chunks_refused():
    q = ms.Tensor(np.ones((1, 1, ops.attention.__globals__["MAX_CHUNKS"] + 1, 4), np.float32))
    with pytest.raises(ValueError, match=r"make 129 chunks .* use a smaller image size"):
        ops.softmax_bmm_attention(q, q[:, :, :8], q[:, :, :8], chunk_size=1)
