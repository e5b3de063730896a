"""msdiff.distributed and msdiff.batch: sharding, resumable batch generation, data-parallel training under msrun.

The msrun test launches this file as the worker script (`python tests/test_distributed.py WORKDIR` in each of two
CPU workers on 127.0.0.1): the workers draw a prompts file with the shipped digit model, then train a tiny
UNet2DModel data-parallel, stop, resume and finish, and average tensors in a compiled graph; the pytest process
meanwhile trains the same run alone.
"""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msdiff import distributed
from msdiff.batch import read_prompts, run_prompts, save_png
from msdiff.distributed import World, batch_share, shard

TINY = dict(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1, block_out_channels=(4,),
            norm_num_groups=2, down_block_types=("DownBlock2D",), up_block_types=("UpBlock2D",),
            attention_head_dim=4, num_class_embeds=3)  # the mid block keeps one attention layer
GLOBAL_BATCH, STEPS, FIRST_LEG = 4, 4, 2
MSRUN_TIMEOUT_S = 480  # the run takes ~6 min on this 2-core machine under load 15; see the report


def _data():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (8, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 8)


def _train(out_dir, steps, jit, losses):
    from msdiff.recipes.train import train_unconditional
    x, y = _data()
    return train_unconditional(x, y, out_dir=out_dir, unet_config=TINY, num_steps=steps, batch_size=GLOBAL_BATCH,
                               warmup_steps=2, jit=jit, progress=False, on_step=lambda s, loss: losses.append(loss))


def _digit(components, fields) -> dict:
    from msdiff.recipes.unconditional import unconditional
    image = unconditional(components, class_labels=[fields["class_label"]], num_inference_steps=fields["steps"],
                          seed=fields["seed"], sampler="ddim", mode="pynative")[0]
    return {"image": image, "sampler": "DDIM"}


def _write_prompts(path: Path) -> Path:
    lines = [json.dumps({"prompt": f"digit {d}", "class_label": d}) for d in range(7)]
    path.write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")
    return path


# ---- sharding and prompts files (no msrun)

def test_shard_is_a_deterministic_partition():
    for n_items in range(12):
        items = list(range(n_items))
        for size in range(1, 6):
            shares = [shard(items, World(r, size)) for r in range(size)]
            assert sorted(i for s in shares for i in s) == items
            assert shares == [shard(items, World(r, size)) for r in range(size)]
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_batch_share_and_world_errors():
    assert [batch_share(8, World(r, 4)) for r in range(4)] == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    with pytest.raises(ValueError, match="multiple of the number of workers 3"):
        batch_share(8, World(0, 3))
    with pytest.raises(ValueError, match="0 <= rank < size"):
        World(2, 2)
    assert "MS_ROLE" not in os.environ and distributed.world() == World(0, 1)


def test_read_prompts(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text('a cat\n\n{"prompt": "A dog!", "seed": 7, "size": "64x32"}\n{"class_label": 2, "name": "two"}\n')
    items = read_prompts(path, defaults={"seed": 10, "steps": 3})
    assert [p.index for p in items] == [0, 1, 2]
    assert [p.fields["seed"] for p in items] == [10, 7, 12]
    assert items[1].fields == {"steps": 3, "seed": 7, "prompt": "A dog!", "size": [64, 32]}
    assert items[0].name.startswith("00000-a-cat-") and items[1].name.startswith("00001-a-dog-")
    assert items[2].name == "two.png"
    assert [p.name for p in read_prompts(path, defaults={"seed": 10, "steps": 3})] == [p.name for p in items]
    assert read_prompts(path, defaults={"seed": 10, "steps": 4})[0].name != items[0].name
    for text, match in [('{"promt": "x"}', r"p.txt:1: unknown key 'promt'"), ('{"seed": "1"}', "seed must be an "
                        "integer"), ("{oops", "not a JSON object"), ('{"size": "big"}', "size must be"),
                        ('{"name": "../x"}', "plain file name"), ("\n\n", "has no prompts"),
                        ('{"name": "a"}\n{"name": "a.png"}', "p.txt:2: output name 'a.png' is also line 1")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_prompts(path)


def _fake(calls, fail_at=None):
    def one(fields):
        if len(calls) == fail_at:
            raise RuntimeError("killed")
        calls.append(fields["seed"])
        return {"image": Image.new("L", (4, 4), fields["seed"]), "sampler": "fake"}
    return one


def test_run_prompts_resumes_after_a_failure_and_writes_atomically(tmp_path):
    prompts, out = _write_prompts(tmp_path / "p.txt"), tmp_path / "out"
    calls = []
    with pytest.raises(RuntimeError, match="killed"):
        run_prompts(prompts, out, _fake(calls, fail_at=3), progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in read_prompts(prompts)[:3])
    result = run_prompts(prompts, out, _fake(calls), progress=False)
    assert calls == list(range(7)) and result.skipped == 3 and len(result.written) == 4
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in read_prompts(prompts))
    image = Image.open(out / read_prompts(prompts)[5].name)
    assert np.asarray(image).max() == 5
    assert image.text["msdiff:prompt"] == "digit 5" and image.text["msdiff:sampler"] == "fake"
    assert image.text["msdiff:index"] == "5" and image.text["msdiff:class_label"] == "5"

    class HalfWritten:
        def save(self, path, **kwargs):
            Path(path).write_bytes(b"\x89PNG half")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_png(HalfWritten(), out / "x.png", {})
    assert not [p for p in out.iterdir() if p.name.startswith((".", "x"))]


def test_simulated_ranks_draw_every_prompt_once(tmp_path):
    prompts, calls = _write_prompts(tmp_path / "p.txt"), []
    written = [run_prompts(prompts, tmp_path / "out", _fake(calls), world=World(r, 3), progress=False).written
               for r in range(3)]
    assert sorted(calls) == list(range(7)) and [len(w) for w in written] == [3, 2, 2]


def test_cli_generate_prompts_file_resumes(tmp_path, capsys):
    from msdiff.cli import main
    prompts, out = tmp_path / "p.txt", tmp_path / "out"
    prompts.write_text('{"seed": 5}\n{"name": "second"}\n')
    argv = ["generate", "--prompts", str(prompts), "--out-dir", str(out), "--per-class", "1", "--steps", "1",
            "--mode", "pynative"]
    assert main(argv) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and "second.png" in names and names[0].startswith("00000-untitled-")
    args = json.loads(Image.open(out / "second.png").text["msdiff:args"])
    assert args["seed"] == 1 and args["steps"] == 1 and args["per_class"] == 1
    assert main(argv) == 0
    assert "wrote 0 images" in capsys.readouterr().out
    assert main(argv + ["--prompt", "x"]) == 2 and "exclude each other" in capsys.readouterr().err


# ---- two msrun workers on localhost

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_msrun_two_workers_batch_and_data_parallel_training(tmp_path):
    from msdiff.recipes.unconditional import load_digits_model
    prompts = read_prompts(_write_prompts(tmp_path / "prompts.txt"), defaults={"steps": 2})
    components = load_digits_model()
    save_png(_digit(components, prompts[0].fields)["image"], tmp_path / "images" / prompts[0].name, {})
    command = ["msrun", "--worker_num", "2", "--local_worker_num", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "--join", "True", "--cluster_time_out", "120",
               "--log_dir", str(tmp_path / "logs"), str(Path(__file__).resolve()), str(tmp_path)]
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=os.pathsep.join(filter(None, [
        str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH")])))
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    try:
        alone = []
        _train(tmp_path / "alone", STEPS, False, alone)
        expected = _digit(components, prompts[1].fields)["image"]
        log, _ = job.communicate(timeout=MSRUN_TIMEOUT_S)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    worker_logs = "".join(p.read_text(errors="replace")[-3000:] for p in sorted((tmp_path / "logs").glob("*.log")))
    assert job.returncode == 0, log[-3000:] + worker_logs
    reports = [json.loads((tmp_path / f"report_{r}.json").read_text()) for r in range(2)]

    # batch: entry 0 existed; the other six drawn once each, by the rank that shard() gives them to
    written = [r["written"] for r in reports]
    assert written == [[p.name for p in prompts[2::2]], [p.name for p in prompts[1::2]]]
    assert [r["skipped"] for r in reports] == [1, 0]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == sorted(p.name for p in prompts)
    got = Image.open(tmp_path / "images" / prompts[1].name)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))

    # training: rank 0 alone wrote; the N=2 loss curve (stopped after FIRST_LEG steps, resumed) is the N=1 one
    assert reports[0]["writes"] > 0 and reports[1]["writes"] == 0
    np.testing.assert_allclose(reports[0]["losses"], alone, rtol=1e-5, atol=0)
    assert reports[0]["losses"] == reports[1]["losses"]
    assert reports[0]["compiled_mean"] == reports[1]["compiled_mean"] == [[1.5], [[1.0, 1.0], [1.0, 1.0]]]
    from safetensors.numpy import load_file
    ours = load_file(str(tmp_path / "parallel" / "unet" / "diffusion_pytorch_model.safetensors"))
    ref = load_file(str(tmp_path / "alone" / "unet" / "diffusion_pytorch_model.safetensors"))
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-4, atol=1e-6, err_msg=k)


def _worker(work: Path) -> None:
    """One msrun worker: batch-draw the prompts file, train data-parallel in two legs, average under jit."""
    import mindspore as ms
    from mindspore import Tensor

    from msdiff.distributed import MeanOverRanks
    from msdiff.recipes import train
    from msdiff.recipes.unconditional import load_digits_model
    w = distributed.world()
    components = load_digits_model()
    batch = run_prompts(work / "prompts.txt", work / "images", lambda fields: _digit(components, fields),
                        defaults={"steps": 2}, progress=False)
    writes = []
    real_write = train.write_atomically
    train.write_atomically = lambda path, write: (writes.append(path), real_write(path, write))[1]
    losses = []
    _train(work / "parallel", FIRST_LEG, False, losses)
    distributed.barrier()
    _train(work / "parallel", STEPS, False, losses)
    mean = ms.jit(MeanOverRanks(w.size))
    inputs = (Tensor(np.float32([w.rank + 1.0])), Tensor(np.full((2, 2), w.rank * 2.0, np.float32)))
    compiled = [t.asnumpy().tolist() for t in mean(inputs)]
    report = {"rank": w.rank, "size": w.size, "written": [p.name for p in batch.written], "skipped": batch.skipped,
              "writes": len(writes), "losses": losses,
              "compiled_mean": compiled}
    (work / f"report_{w.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
