# Written by modvm for one test. Each time the guest stops (modvm pauses it
# right after every insmod), this adds the symbols of the test's modules at
# the addresses the guest loaded them at, read from the file below, which
# modvm rewrites before each pause. Symbols added earlier are removed first,
# so a module loaded again is found at its new address.
import shlex

import gdb

MODULES = @MODULES@
_added = []
_seen = [None]


def _load(_event=None):
    try:
        with open(MODULES) as f:
            text = f.read()
    except OSError:
        return
    if text == _seen[0]:
        return
    _seen[0] = text
    confirm = gdb.parameter("confirm")
    gdb.execute("set confirm off")
    try:
        for path in _added:
            try:
                gdb.execute("remove-symbol-file " + shlex.quote(path), to_string=True)
            except gdb.error:
                pass
        del _added[:]
        for line in text.splitlines():
            if line.startswith("add-symbol-file "):
                gdb.execute(line, to_string=True)
                path = shlex.split(line)[1]
                _added.append(path)
                print("modvm: symbols of %s added" % path)
    finally:
        gdb.execute("set confirm " + ("on" if confirm else "off"))


gdb.events.stop.connect(_load)
_load()
