"""Turns the samples scripts/bench.sh collected into its table and JSON.

    python3 summary.py SAMPLES_DIR JSON_OUT RUNS HOST

SAMPLES_DIR holds one file per measurement, named by its key, one number
per line, plus `trace/*.log` (stderr of `MODVM_TRACE=1` runs of the 20-test
suite at -j 1) and `trace-fresh/*.log` (the same for the runs that built a
module for the first time). Every figure is reported as median, min and max
over its samples; a measurement without samples fails the summary, so a
broken bench cannot pass for a fast one.
"""

import json
import re
import statistics
import sys
from pathlib import Path

# (key, label, unit); None starts a new section titled by the label.
ROWS = [
    (None, "boot", None),
    ("plain_boot", "plain QEMU cold boot to poweroff -f", "ms"),
    ("cold_boot", "modvm cold boot to ready (boot_ms)", "ms"),
    ("restore_boot", "restore to ready (boot_ms)", "ms"),
    (None, "one hello test, whole command", None),
    ("hello_restored", "restored", "ms"),
    ("hello_cold", "--cold", "ms"),
    ("hello_restored_debug", "restored, debug build (cargo run)", "ms"),
    (None, "hello-style suites, whole command, restored", None),
    ("suite20_j1", "20 tests, -j 1", "ms"),
    ("suite20_j2", "20 tests, -j 2", "ms"),
    ("suite50_j1", "50 tests, -j 1", "ms"),
    ("suite50_j2", "50 tests, -j 2", "ms"),
    (None, "per test, MODVM_TRACE=1 over 20 tests at -j 1", None),
    ("trace.module-prepare", "module-prepare", "ms"),
    ("trace.qemu-start", "qemu-start", "ms"),
    ("trace.restore", "restore", "ms"),
    ("trace.setup", "setup (modules in, switches set)", "ms"),
    ("trace.step-command", "step-command (each step)", "ms"),
    ("trace.steps", "steps (all of a test's)", "ms"),
    ("trace.stop", "stop", "ms"),
    ("trace.test", "test", "ms"),
    (None, "per run, same runs", None),
    ("trace.kit", "kit", "ms"),
    ("trace.build", "build (module up to date)", "ms"),
    ("fresh.build", "build (first build of the module)", "ms"),
    ("trace.snapshot-check", "snapshot-check", "ms"),
    ("trace.report", "report", "ms"),
    (None, "failures and console", None),
    ("panic", "panic to verdict", "ms"),
    ("overshoot_sleep", "timeout past a 3 s deadline (sleep)", "ms"),
    ("overshoot_yes", "same, command printing (yes)", "ms"),
    ("mb", "1 MB of output through the shell", "ms"),
    (None, "memory", None),
    ("peak_rss", "modvm peak RSS (VmHWM), 20 tests -j 2", "MiB"),
]

# (key, label, numerator, denominator key, tests the denominator stands for)
RATIOS = [
    ("hello_vs_plain", "one restored hello / plain boot", "hello_restored", "plain_boot", 1),
    ("hello_debug_vs_plain", "same, debug build / plain boot", "hello_restored_debug", "plain_boot", 1),
    ("suite20_vs_plain", "20 tests -j 2 / (20 x plain boot)", "suite20_j2", "plain_boot", 20),
    ("suite50_vs_plain", "50 tests -j 2 / (50 x plain boot)", "suite50_j2", "plain_boot", 50),
]

TRACE = re.compile(r"modvm-trace (\S+) ([0-9]+(?:\.[0-9]+)?)")


def read_numbers(path):
    return [float(w) for w in path.read_text().split()]


def read_traces(folder, prefix, samples):
    for log in sorted(folder.glob("*.log")):
        for match in TRACE.finditer(log.read_text(errors="replace")):
            samples.setdefault(f"{prefix}.{match[1]}", []).append(float(match[2]))


def stats(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: summary.py SAMPLES_DIR JSON_OUT RUNS HOST")
    folder, json_out, runs, host = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    samples = {p.name: read_numbers(p) for p in folder.iterdir() if p.is_file()}
    read_traces(folder / "trace", "trace", samples)
    read_traces(folder / "trace-fresh", "fresh", samples)

    metrics, missing = {}, []
    for key, label, unit in ROWS:
        if key is None:
            print(f"{label}:")
            continue
        values = samples.get(key, [])
        if not values:
            missing.append(key)
            print(f"  {label:<44} missing")
            continue
        s = stats(values)
        metrics[key] = {"label": label, "unit": unit, **s, "samples": values}
        print(
            f"  {label:<44} median {s['median']:8.1f} {unit:<3}  "
            f"min {s['min']:8.1f}  max {s['max']:8.1f}  (n={s['n']})"
        )

    ratios = {}
    print("ratios (medians):")
    for key, label, num, den, count in RATIOS:
        if num in metrics and den in metrics:
            value = metrics[num]["median"] / (count * metrics[den]["median"])
            ratios[key] = {"label": label, "value": round(value, 4)}
            print(f"  {label:<44} {value:6.3f}")
        else:
            missing.append(key)
            print(f"  {label:<44} missing")

    print(f"runs: {runs}; {host}")
    report = {"runs": runs, "host": host, "metrics": metrics, "ratios": ratios, "missing": missing}
    json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"JSON: {json_out}")
    if missing:
        sys.exit(f"bench: no samples for: {', '.join(missing)}")


if __name__ == "__main__":
    main()
