"""The worker edgekit pushes to a device: `python3 device_worker.py JOB.json`.

Self-contained: it needs NumPy and one runtime on the device, nothing else (no edgekit, no
TensorFlow). It loads the artifact the way edgekit's local backends do (same threads,
same OpenVINO compile properties, same LiteRT interpreter), times it with timedloop.py (the
same file the local worker imports, pushed beside this one), and writes raw timings and
outputs for the host to turn into the report. Quantizing inputs and scoring outputs stay
on the host, so this file stays small.
"""
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timedloop import timed_loop  # noqa: E402  (pushed beside this file)

import numpy as np  # noqa: E402


def load_tflite(job):
    package = "ai-edge-litert"
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
            package = "tflite-runtime"
        except ImportError:
            raise SystemExit("no TFLite runtime on the device: pip install ai-edge-litert (or tflite-runtime)")
    threads = job["threads"] or 1  # as the local backend: explicit, so the report is true
    interpreter = Interpreter(model_path=job["path"], num_threads=threads)
    interpreter.allocate_tensors()
    signatures = interpreter._get_full_signature_list()
    signature = signatures.get("serving_default") or (next(iter(signatures.values())) if len(signatures) == 1 else None)
    by_name = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    outputs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    if signature is not None:
        by_name.update(signature["inputs"])
        outputs = dict(signature["outputs"])
    inputs = [(name, by_name[name]) for name in job["input_names"]]
    shapes = {int(d["index"]): tuple(d["shape"].tolist()) for d in interpreter.get_input_details()}

    def infer(feeds):
        resized = False
        for name, index in inputs:
            if feeds[name].shape != shapes[index]:
                interpreter.resize_tensor_input(index, feeds[name].shape)
                shapes[index] = feeds[name].shape
                resized = True
        if resized:
            interpreter.allocate_tensors()
        for name, index in inputs:
            interpreter.set_tensor(index, feeds[name])
        interpreter.invoke()
        return {name: interpreter.get_tensor(index) for name, index in outputs.items()}

    return infer, {"runtime": "tflite", "interpreter": f"{package} {_version(package)}", "device": "CPU",
                   "delegate": None, "threads": threads, "precision": job.get("precision")}


def load_onnxruntime(job):
    try:
        import onnxruntime as ort
    except ImportError:
        raise SystemExit("no ONNX Runtime on the device: pip install onnxruntime")
    options = ort.SessionOptions()
    if job["threads"]:
        options.intra_op_num_threads = job["threads"]
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = ort.get_available_providers()
    providers = [p for p in job["providers"] if p in available] or ["CPUExecutionProvider"]
    session = ort.InferenceSession(job["path"], options, providers=providers)
    names = [o.name for o in session.get_outputs()]

    def infer(feeds):
        return dict(zip(names, session.run(names, feeds)))

    return infer, {"runtime": "onnxruntime", "version": ort.__version__, "providers_requested": job["providers"],
                   "providers_used": session.get_providers(), "threads": job["threads"], "inter_op_threads": 1,
                   "graph_optimization": "all", "precision": job.get("precision")}


def load_openvino(job):
    try:
        import openvino as ov
    except ImportError:
        raise SystemExit("no OpenVINO on the device: pip install openvino")
    core = ov.Core()
    xml = job["path"]
    model = core.read_model(xml, xml[: -len(".xml")] + ".bin")
    shapes = [port.get_partial_shape() for port in model.inputs]
    if not all(s.is_static for s in shapes) and all(
            s.rank.is_static and all(d.is_static for d in list(s)[1:]) for s in shapes):
        # A dynamic batch compiles as static batch 1, as edgekit's local backend and benchmark_app -shape do.
        model.reshape({p.get_any_name(): [1, *(d.get_length() for d in list(s)[1:])] for p, s in zip(model.inputs, shapes)})
    device = job["device"] or "CPU"
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if job["threads"]:
        config["INFERENCE_NUM_THREADS"] = job["threads"]
    if job.get("precision") == "fp32" or (job.get("precision") == "fp16" and device == "CPU"):
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, device, config)
    request = compiled.create_infer_request()
    in_names = [p.get_any_name() for p in compiled.inputs]
    out_names = [p.get_any_name() for p in compiled.outputs]

    def infer(feeds):
        for index, name in enumerate(in_names):
            request.set_input_tensor(index, ov.Tensor(np.ascontiguousarray(feeds[name]), shared_memory=True))
        request.start_async()
        request.wait()
        return {name: request.get_output_tensor(i).data.copy() for i, name in enumerate(out_names)}

    infer.runtime_clock = lambda: int(request.latency * 1e6)  # benchmark_app's timer (openvino_backend.py)
    infer.runtime_timer = "OpenVINO InferRequest.latency (the timer benchmark_app reports)"

    try:
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    except RuntimeError:
        precision = None
    return infer, {"runtime": "openvino", "version": _version("openvino") or ov.get_version(), "device": device,
                   "inference_precision": precision, "artifact_precision": job.get("precision"),
                   "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
                   "execution_devices": list(compiled.get_property("EXECUTION_DEVICES"))}


LOADERS = {"tflite": load_tflite, "onnxruntime": load_onnxruntime, "openvino": load_openvino}


def _version(distribution):
    try:
        from importlib.metadata import version

        return version(distribution)
    except Exception:
        return None


def peak_rss_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb():
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None


def run(job):
    before = _rss_mb()
    started = time.perf_counter_ns()
    infer, backend = LOADERS[job["runtime"]](job)
    load_ns = time.perf_counter_ns() - started
    after = _rss_mb()
    with np.load(job["first"]) as archive:
        first = {name: archive[name] for name in job["input_names"]}
    started = time.perf_counter_ns()
    infer(first)
    first_ns = time.perf_counter_ns() - started
    clock, runtime_timings = getattr(infer, "runtime_clock", None), []
    timings = timed_loop(infer, first, job["warmup"], job["min_runs"], job["min_time"], job["max_time"],
                         runtime_clock=clock, runtime_timings=runtime_timings)
    if runtime_timings:
        backend["runtime_timer"] = infer.runtime_timer
    result = {"backend": backend, "timings_ns": timings, "runtime_timings_ns": runtime_timings, "load_ms": load_ns / 1e6, "first_inference_ms": first_ns / 1e6,
              "model_memory_mb": after - before if before is not None and after is not None else None}
    if job.get("data"):
        with np.load(job["data"]) as archive:
            data = {name: archive[name] for name in job["input_names"]}
        samples, batch = len(next(iter(data.values()))), job["batch"]
        produced = {}
        for start in range(0, samples, batch):
            out = infer({name: array[start: start + batch] for name, array in data.items()})
            for name, value in out.items():
                produced.setdefault(name, []).append(value)
        np.savez(job["outputs_file"], **{name: np.concatenate(chunks) for name, chunks in produced.items()})
    result["peak_memory_mb"] = peak_rss_mb()
    return result


def main():
    with open(sys.argv[1]) as handle:
        job = json.load(handle)
    try:
        result = run(job)
    except SystemExit as exc:  # a missing runtime: its message, as this artifact's error
        result = {"error": str(exc)}
    except Exception as exc:
        lines = str(exc).strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {lines[-1][:300] if lines else ''}"}
    with open(job["result_file"] + ".part", "w") as handle:
        json.dump(result, handle)
    os.replace(job["result_file"] + ".part", job["result_file"])


if __name__ == "__main__":
    main()
