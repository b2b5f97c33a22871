"""The vendor-binary route (no Python on the device, e.g. stock Android): run the runtime's own tool.

edgekit pushes the binary the device table points to (content-addressed, like artifacts),
runs it with the flags that match the bench settings, and reads its output with
edgekit.benchmarks.remote.parsers. The tool's own loop does the timing here, not timedloop.py:
the report says which tool and which flags.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from edgekit.benchmarks.remote.parsers import PARSERS
from edgekit.benchmarks.remote.transport import DeviceError

LATENCY_FIELDS = ("runs", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")


def prepare_binary(transport, device) -> dict[str, Any]:
    if device.binary:
        folder = transport.push_addressed([Path(device.binary)], device.workdir)
        path = f"{folder}/{Path(device.binary).name}"
        transport.shell(f"chmod +x {shlex.quote(path)}")
    else:
        path = device.binary_on_device
    check = transport.run(["sh", "-c", '[ -x "$0" ] && echo ok', path], 15.0)
    if "ok" not in check.stdout:
        raise DeviceError(f"{device.runner.value}: {path} is not an executable file on the device")
    return {"path": path, "describe": f"{device.runner.value} ({path})"}


def flags(tool: str, model: str, settings, accelerator: str | None, threads: int | None, precision: str | None,
          inputs=()) -> list[str]:
    """The tool's own flags for edgekit's bench settings."""
    runs = max(settings.min_runs, 1)
    if tool == "benchmark_model":
        argv = [f"--graph={model}", f"--num_threads={threads or 1}", f"--warmup_runs={settings.warmup}",
                f"--num_runs={runs}", f"--min_secs={settings.min_time:g}", f"--max_secs={settings.max_time:g}"]
        delegate = (accelerator or "CPU").upper()
        if delegate == "GPU":
            argv.append("--use_gpu=true")
        elif delegate == "NNAPI":
            argv.append("--use_nnapi=true")
        elif accelerator and (accelerator.endswith(".so") or ".so." in accelerator):
            argv.append(f"--external_delegate_path={accelerator}")
        return argv
    if tool == "benchmark_app":
        argv = ["-m", model, "-d", accelerator or "CPU", "-hint", "none", "-nstreams", "1", "-nireq", "1",
                "-niter", str(runs)]
        if threads:
            argv += ["-nthreads", str(threads)]
        if any(None in spec.shape for spec in inputs):  # benchmark_app refuses a dynamic shape (STACK.md)
            argv += ["-shape", ",".join(f"{s.name}[{','.join(str(d or settings.batch) for d in s.shape)}]"
                                        for s in inputs)]
        if precision == "fp32" and (accelerator or "CPU") == "CPU":
            argv += ["-infer_precision", "f32"]  # this CPU would run fp32 in bf16 otherwise (STACK.md)
        return argv
    argv = ["-I", "-m", "times", "-r", str(runs), "-y", "1"]
    if threads:
        argv += ["-x", str(threads)]
    return [*argv, model]


def run_binary(transport, device, binary: dict[str, Any], item, remote_model: str, settings, timeout: float) -> dict[str, Any]:
    from edgekit.benchmarks.runner import _placement

    tool = device.runner.value
    accelerator, _ = _placement(item.artifact, item.recipe, settings)
    threads = settings.threads or (item.recipe.threads if item.recipe else None)
    argv = [binary["path"], *flags(tool, remote_model, settings, accelerator if accelerator != "CPU" else None,
                                    threads, item.artifact.precision or None, item.artifact.inputs)]
    done = transport.run_guarded(argv, timeout, device.workdir)
    output = f"{done.stdout}\n{done.stderr}"
    parsed = PARSERS[tool](output)
    tail = [line for line in output.strip().splitlines() if line.strip()][-15:]
    backend = {"runtime": tool, "binary": binary["path"], "argv": argv[1:], "timed_by": f"{tool}'s own loop",
               "output_tail": tail}
    if parsed.get("accelerated_ops"):
        backend["accelerated_ops"] = parsed["accelerated_ops"]
    if done.status != 0 or ("latency" not in parsed and parsed.get("error")):
        reason = parsed.get("error") or (tail[-1] if tail else "")
        return {"error": f"{tool} exited with status {done.status}: {reason[:300]}", "backend": backend}
    outcome: dict[str, Any] = {"backend": backend, "skipped": {}, "notes": []}
    for key in ("init_ms", "first_inference_ms", "peak_memory_mb"):
        if key in parsed:
            outcome["load_ms" if key == "init_ms" else key] = parsed[key]
    latency = parsed.get("latency", {})
    if latency.get("p50_ms") is None:
        mean = f" (its mean: {latency['mean_ms']:.4g} ms)" if latency.get("mean_ms") else ""
        outcome["skipped"]["latency"] = f"{tool} printed no median{mean}; edgekit reports medians, not means or minimums"
        backend["tool_latency"] = latency
        return outcome
    stats = {key: latency.get(key) for key in LATENCY_FIELDS}
    mean, std = stats["mean_ms"], stats["std_ms"]
    stats["throughput_ips"] = parsed.get("throughput_ips") or (settings.batch * 1000.0 / mean if mean else None)
    stats["cv"] = std / mean if mean and std is not None else None
    stats["runs"] = int(stats["runs"] or 0)
    outcome["latency"] = stats
    return outcome
