"""Cold start of the commands users wait on: `--help`, `targets`, `doctor --help`, shell completion.

The goal is 0.15 s each (issue 12; peers: optimum-cli 0.098 s, polygraphy 0.135 s). Each
command runs ROUNDS times, interleaved with the others and with a bare `python -c pass`,
so that drift on a shared host hits all alike. Reported per command: the best and the
median wall time, and the CPU time (user + system) of the child, which contention
inflates less than wall time. The asserted figure is that CPU time (best of ROUNDS): on
the shared 2-core hosts wall times read 2-5x a quiet host's (even `python -c pass`), while
the CPU time of the old `--help` (0.22 s) matched its wall time measured on a quiet one.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

GOAL_S = 0.15
ROUNDS = 15
EDGEKIT = str(Path(sys.executable).with_name("edgekit"))
COMMANDS = {
    "python -c pass": ([sys.executable, "-c", "pass"], {}),
    "edgekit --help": ([EDGEKIT, "--help"], {}),
    "edgekit targets": ([EDGEKIT, "targets"], {}),
    "edgekit doctor --help": ([EDGEKIT, "doctor", "--help"], {}),
    "completion (edgekit ta<TAB>)": ([EDGEKIT], {"_EDGEKIT_COMPLETE": "complete_bash", "COMP_WORDS": "edgekit ta", "COMP_CWORD": "1"}),
}


def _run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, command
    return wall, usage.ru_utime + usage.ru_stime


@pytest.fixture(scope="module")
def cold_starts() -> dict[str, dict[str, float]]:
    for command, env in COMMANDS.values():  # page the files in once: cold means a new process, not a cold disk
        _run_once(command, env)
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(ROUNDS):
        for name, (command, env) in COMMANDS.items():
            w, c = _run_once(command, env)
            wall[name].append(w)
            cpu[name].append(c)
    figures = {name: {"best_s": min(wall[name]), "median_s": statistics.median(wall[name]), "cpu_s": min(cpu[name]),
                      "spread": statistics.median(wall[name]) / min(wall[name])} for name in COMMANDS}
    print()
    for name, f in figures.items():
        print(f"{name:30s} best {f['best_s']:.3f} s, median {f['median_s']:.3f} s, CPU {f['cpu_s']:.3f} s "
              f"(median/best {f['spread']:.2f}; goal {GOAL_S} s)")
    return figures


@pytest.mark.parametrize("name", [n for n in COMMANDS if n.startswith(("edgekit", "completion"))])
def test_cold_start(benchmark, cold_starts, name):
    figures = cold_starts[name]
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)  # the figures come from the interleaved rounds
    benchmark.extra_info.update({k: round(v, 4) for k, v in figures.items()}, goal_s=GOAL_S,
                                python_pass_best_s=round(cold_starts["python -c pass"]["best_s"], 4))
    assert figures["cpu_s"] <= GOAL_S, f"{name}: {figures['cpu_s']:.3f} s of CPU, best of {ROUNDS} (goal {GOAL_S} s)"
