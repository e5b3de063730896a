"""Framework-free timing and memory helpers used by both the MindSpore and the PyTorch side."""
import json
import resource
import statistics
import sys
import time

RESULT_PREFIX = "BENCH_RESULT "


def time_call(fn, min_time: float = 1.0, max_reps: int = 20, single_above: float = None) -> dict:
    """Time fn() once (first call: compile + run) then repeatedly; steady ms is the median of the repeats.

    With `single_above` (seconds), a first call slower than that is taken as the steady time (no
    repeats): for kernels so slow that one call dwarfs any warm-up cost.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    if single_above is not None and first > single_above:
        return {"first_s": first, "ms": first * 1e3, "reps": 0, "compile_s": 0.0}
    times, total = [], 0.0
    while not times or (total < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    steady = statistics.median(times)
    return {"first_s": first, "ms": steady * 1e3, "reps": len(times), "compile_s": max(first - steady, 0.0)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_rss() -> dict:
    """VmRSS / VmHWM of this process in MB (integers), from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) // 1024
    return out


def current_rss_mb() -> float:
    """Current resident set size (VmRSS) in MiB; falls back to the peak where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def emit(result) -> None:
    """Print one result for the parent process to pick up."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_results(stdout: str) -> list:
    """All results emitted by a worker process."""
    return [json.loads(line[len(RESULT_PREFIX):]) for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]


def gflops(flops, ms):
    """GFLOP/s from a FLOP count and milliseconds per call (None where either is missing)."""
    if not flops or not ms:
        return None
    return flops / (ms * 1e-3) / 1e9


def run_worker(python: str, module: str, payload, timeout: float, cwd: str) -> tuple:
    """Run `python -m module --case JSON` in a fresh process; returns (results, error or None)."""
    import os
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = cwd + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [python, "-m", module, "--case", json.dumps(payload)]
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return parse_results(out), f"timed out after {timeout:.0f} s"
    results = parse_results(proc.stdout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return results, f"exit {proc.returncode}: {tail[0][:300]}"
    return results, None
