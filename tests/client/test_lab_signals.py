"""The lab turns SIGTERM into KeyboardInterrupt so fixtures tear down; a forked child must not inherit that.

Regression: pyroute2's namespace helper is a fork of the test process; a teardown SIGTERMs what is left in a
namespace, and the child then unwound into the parent's code and went on running the parent's tests.
"""

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from lab import netns
    netns._install_sigterm_handler()
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(30)
        except KeyboardInterrupt:
            print("child unwound into the parent's code", flush=True)
        os._exit(0)
    time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    print("exit", os.waitstatus_to_exitcode(status), flush=True)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except KeyboardInterrupt:
        print("parent interrupted", flush=True)
    """
)


def test_forked_child_dies_on_sigterm_while_the_parent_still_tears_down():
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=30).stdout
    assert out.splitlines() == [f"exit {128 + 15}", "parent interrupted"]
