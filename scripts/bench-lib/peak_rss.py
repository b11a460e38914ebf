"""Runs a command and prints its own peak resident set size in KiB.

    python3 peak_rss.py COMMAND [ARG ...]

`/usr/bin/time -f %M` and wait4's rusage fold in the children the command
reaps (here the QEMU guests, each far larger than modvm), so this reads
`VmHWM` from /proc/<pid>/status of the command itself every 20 ms while it
runs and keeps the largest value. The command's stdout is discarded; its
exit status is passed on.
"""

import subprocess
import sys
import time


def hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone, or a zombie: no memory map left to read


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: peak_rss.py COMMAND [ARG ...]")
    child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        peak = max(peak, hwm_kib(child.pid))
        time.sleep(0.02)
    print(peak)
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
