"""The benchmark suite in smoke size (seconds): it runs, prints its tables and writes well-formed JSON."""
import json
import sys

import pytest

from benchmarks import report, specs
from benchmarks.__main__ import main


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "smoke.json"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--smoke", "--no-reference", "--json", str(path)]) == 0
    return out.getvalue(), json.loads(path.read_text())


def test_table_sections_printed(smoke):
    text, _ = smoke
    for header in ("== ops:", "== nets:", "== loading memory ==", "== targets"):
        assert header in text
    assert "msdiff/diffusers" in text and "n/a" in text


def test_op_rows(smoke):
    _, result = smoke
    ours = [r for r in result["ops"] if r.get("source") == "benchmarks.specs"]
    assert [(r["op"], r["dtype"]) for r in ours] == [(c["op"], c["dtype"]) for c in specs.op_cases(True)]
    for r in ours:
        assert r["msdiff_ms"] > 0 and r["msdiff_gflops"] > 0
        assert r.get("native_ms") or r.get("native_error")
        assert r["ref_error"] == "n/a"
        # the native formulations compute the same function (fp16 rows: fp16 rounding)
        tol = 1e-2 if r["dtype"] == "float16" else 1e-5
        assert r["max_abs_diff_vs_native"] < tol, r


def test_net_rows(smoke):
    _, result = smoke
    rows = result["nets"]
    assert [r["id"] for r in rows] == [c["id"] for c in specs.net_cases(True)]
    for r in rows:
        assert "error" not in r, r
        assert r["ms"] > 0 and r["first_s"] > 0 and r["peak_rss_mb"] > 0 and r["finite"]
        assert (r["compile_s"] is not None) == (r["mode"] == "graph")
        assert r["ref_error"].startswith("n/a") and "ratio_vs_ref" not in r


def test_load_row(smoke):
    _, result = smoke
    row = result["load"]
    assert "error" not in row, row
    assert row["weight_mb"] > 0 and row["peak_rss_mb"] >= row["base_rss_mb"] and row["weight_copies"] > 0


def test_targets_and_meta(smoke):
    _, result = smoke
    assert result["meta"]["smoke"] is True and result["meta"]["mindspore"]
    assert len(result["targets"]) == 12
    for t in result["targets"]:
        assert t["pass"] in (True, False, None) and t["target"]
    against_reference = [t for t in result["targets"] if "diffusers" in t["target"] or "torch" in t["target"]]
    assert len(against_reference) == 8 and all(t["pass"] is None for t in against_reference)  # no reference side


def test_speed_targets_read_the_ratios():
    """Planted rows: each speed target passes or fails on its own ratio and limit."""
    nets = [dict(label="unet sd15 step 64x64 b2", dtype="float32", mode="graph", ms=9.0, ref_ms=10.0,
                 ratio_vs_ref=0.9, peak_rss_mb=700.0, ref_peak_rss_mb=400.0),
            dict(label="unet sd15 step 64x64 b2", dtype="float32", mode="pynative", ms=16.0, ref_ms=10.0,
                 ratio_vs_ref=1.6),
            dict(label="vae sd15 decode 512x512 b1", dtype="float32", mode="graph", ms=9.5, ref_ms=10.0,
                 ratio_vs_ref=0.95)]
    ops = [dict(source="benchmarks.specs", op="conv2d", dtype="float32", label="c", msdiff_ms=10.0, ref_ms=9.5),
           dict(source="benchmarks.specs", op="attention", dtype="float32", label="a", msdiff_ms=13.0, ref_ms=10.0)]
    got = {t["target"]: t["pass"] for t in report.speed_targets(ops, nets, smoke=False)}
    assert got["SD-1.5 UNet step 64x64 b2 fp32 graph <= 1.0x diffusers"] is True
    assert got["SD-1.5 UNet step 64x64 b2 fp32 pynative <= 1.5x diffusers"] is False
    assert got["SD-1.5 UNet step 32x32 b2 fp32 graph <= 1.0x diffusers"] is None
    assert got["SD-1.5 VAE decode 512x512 fp32 <= 1.0x diffusers"] is True
    assert got["graph peak RSS of the 64x64 UNet step <= 1.5x diffusers'"] is False  # 1.75x
    assert got["conv2d 1x320x64x64 3x3 fp32 >= 0.9x torch's GFLOP/s"] is True  # 0.95x torch's throughput
    assert got["attention fp32 <= 1.2x torch"] is False and got["group_norm fp32 <= 2.0x torch"] is None


def test_table_alignment():
    text = report.table(["a", "bb"], [["x", 1.5], ["long", 22]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1 and lines[1].startswith("----")


def test_merge_keeps_rows_and_targets(smoke):
    _, result = smoke
    merged = report.merge([result, result])
    assert len(merged["nets"]) == len(result["nets"]) and len(merged["ops"]) == len(result["ops"])
    assert [t["pass"] for t in merged["targets"]] == [t["pass"] for t in result["targets"]]
    assert "== targets" in report.render(merged)


def test_realsize_case_process_and_its_rss_cap():
    """benchmarks/realsize.py: one tiny case in its own process (timed, peak RSS), and the watchdog's stop."""
    from benchmarks import realsize

    case = next(c for c in realsize.cases(smoke=True) if c["id"] == "smoke vae 8 fp32 pynative")
    row = realsize.run_case(case, "msdiff", sys.executable, 12000, 120)
    assert "error" not in row and "stopped" not in row, row
    assert row["step_s"] > 0 and row["first_s"] > 0 and row["finite"] and row["peak_rss_mb"] >= row["built_rss_mb"]
    stopped = realsize.run_case(case, "msdiff", sys.executable, 300, 120)
    assert stopped["stopped"] == "stopped at cap (300 MB)" and stopped["rss_at_stop_mb"] > 300, stopped
