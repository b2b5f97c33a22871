"""What a device is and how warm it is, read with a POSIX shell script (no Python needed there).

The same probe serves `edgekit devices` (CPU, cores, governor, sensors, free disk) and the
thermal record taken before and after each artifact (governor, frequencies, temperatures).
"""
from __future__ import annotations

import json
import shlex
from typing import Any

# Sections are marked "@name"; every command tolerates a missing file (a phone, a container).
_PROBE = r"""
echo @uname; uname -srm 2>/dev/null
echo @os; (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME") || true
echo @android; getprop ro.build.version.release 2>/dev/null; getprop ro.product.model 2>/dev/null; getprop ro.soc.model 2>/dev/null
echo @cpuinfo; grep -E '^(model name|Model|Hardware|CPU part|Processor)' /proc/cpuinfo 2>/dev/null | head -4
echo @devicetree; tr -d '\0' < /proc/device-tree/model 2>/dev/null; echo
echo @cores; nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo
echo @governor; cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null
echo @freq; cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq 2>/dev/null
echo @maxfreq; cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_max_freq 2>/dev/null
echo @thermal; for z in /sys/class/thermal/thermal_zone*; do [ -r "$z/temp" ] && echo "$(cat "$z/type" 2>/dev/null || basename "$z") $(cat "$z/temp" 2>/dev/null)"; done
echo @throttled; vcgencmd get_throttled 2>/dev/null
echo @df; df -Pk WORKDIR 2>/dev/null | tail -1
echo @end
"""

# Run by the device's Python: which runtimes it can import, without importing them.
_RUNTIMES = (
    "import importlib.metadata as m, json, sys\n"
    "names = ('numpy', 'ai-edge-litert', 'tflite-runtime', 'onnxruntime', 'openvino', 'tensorflow')\n"
    "found = {}\n"
    "for n in names:\n"
    "    try: found[n] = m.version(n)\n"
    "    except m.PackageNotFoundError: pass\n"
    "print(json.dumps({'python': sys.version.split()[0], 'packages': found}))\n"
)

# Which runtime module a format needs on the device, and the distributions that provide it.
RUNTIME_PACKAGES = {"tflite": ("ai-edge-litert", "tflite-runtime"), "onnxruntime": ("onnxruntime",),
                    "openvino": ("openvino",)}


def probe(transport, workdir: str) -> dict[str, Any]:
    """The device's facts now; raises DeviceError when the link fails."""
    done = transport.shell(_PROBE.replace("WORKDIR", shlex.quote(workdir)), 30.0)
    return parse_probe(done.stdout)


def parse_probe(text: str) -> dict[str, Any]:
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line[1:].strip()
            sections[current] = []
        elif current is not None and line.strip():
            sections[current].append(line.strip())
    get = sections.get
    cpuinfo = dict(line.split(":", 1) for line in get("cpuinfo", []) if ":" in line)
    cpuinfo = {k.strip(): v.strip() for k, v in cpuinfo.items()}
    android = get("android", [])
    model = (cpuinfo.get("model name") or cpuinfo.get("Hardware") or cpuinfo.get("Model")
             or (android[2] if len(android) > 2 else None) or next(iter(get("devicetree", [])), None))
    uname = next(iter(get("uname", [])), "")
    temperatures = {}
    for line in get("thermal", []):
        name, _, value = line.rpartition(" ")
        try:
            reading = float(value)
        except ValueError:
            continue
        key = name or "zone"
        while key in temperatures:
            key += "'"
        temperatures[key] = reading / 1000 if abs(reading) > 200 else reading  # millidegrees on Linux
    free_mb = None
    df = get("df", [])
    if df:
        fields = df[0].split()
        if len(fields) >= 4 and fields[3].isdigit():
            free_mb = int(fields[3]) / 1024
    throttled = next(iter(get("throttled", [])), None)
    return {
        "cpu_model": model,
        "board": next(iter(get("devicetree", [])), None),
        "cores": int(get("cores", ["0"])[0]) if get("cores") and get("cores")[0].isdigit() else None,
        "os": next(iter(get("os", [])), None) or (f"Android {android[0]}" if android else None),
        "kernel": uname,
        "android_model": android[1] if len(android) > 1 else None,
        "governor": sorted(set(get("governor", []))) or None,
        "frequencies_mhz": [int(v) / 1000 for v in get("freq", []) if v.isdigit()] or None,
        "max_frequencies_mhz": [int(v) / 1000 for v in get("maxfreq", []) if v.isdigit()] or None,
        "temperatures_c": temperatures or None,
        "vcgencmd_throttled": throttled.split("=", 1)[-1] if throttled else None,
        "free_disk_mb": free_mb,
    }


def runtimes(transport, python: str) -> dict[str, Any]:
    """{'python': version, 'packages': {distribution: version}} from the device's interpreter."""
    from edgekit.benchmarks.remote.transport import DeviceError

    done = transport.run([python, "-c", _RUNTIMES], 30.0)
    if done.status != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise DeviceError(f"no usable Python on the device: `{python}` failed "
                          f"({reason[-1][:200] if reason else f'exit {done.status}'}); set python = PATH in the device table")
    return json.loads(done.stdout.strip().splitlines()[-1])


def thermal(facts: dict[str, Any]) -> dict[str, Any]:
    """The part of a probe that changes while a device works."""
    keys = ("governor", "frequencies_mhz", "temperatures_c", "vcgencmd_throttled")
    return {k: facts.get(k) for k in keys}


def hottest(facts: dict[str, Any]) -> float | None:
    temps = facts.get("temperatures_c") or {}
    return max(temps.values()) if temps else None


def throttled(before: dict[str, Any], after: dict[str, Any], max_temperature: float | None) -> list[str]:
    """Reasons a run was throttled (empty: it was not): frequency dropped, threshold crossed, firmware flag."""
    reasons = []
    top_before = max(before.get("frequencies_mhz") or [0])
    top_after = max(after.get("frequencies_mhz") or [0])
    governors = set(before.get("governor") or []) | set(after.get("governor") or [])
    # Only a fixed-frequency governor makes a drop meaningful; ondemand/schedutil idle low by design.
    if top_before and top_after and top_after < 0.95 * top_before and governors <= {"performance"}:
        reasons.append(f"CPU frequency dropped from {top_before:g} to {top_after:g} MHz")
    hot = hottest(after)
    if max_temperature is not None and hot is not None and hot >= max_temperature:
        reasons.append(f"temperature reached {hot:.1f} °C (threshold {max_temperature:g} °C)")
    flag = after.get("vcgencmd_throttled")
    if flag and flag not in ("0x0", "0"):
        try:
            if int(flag, 16) & 0xF:  # the "now" bits: under-voltage, capped, throttled, soft limit
                reasons.append(f"firmware reports throttling (vcgencmd get_throttled = {flag})")
        except ValueError:
            pass
    return reasons
