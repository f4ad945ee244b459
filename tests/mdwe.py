"""Run a program with memory both writable and executable refused to it and its children
(prctl PR_SET_MDWE, Linux 6.3+): what systemd's MemoryDenyWriteExecute=yes enforces with a
seccomp filter. Exits 77 where the kernel cannot.

    python tests/mdwe.py PROGRAM ARGS...
"""
import ctypes
import os
import sys

PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1

if __name__ == "__main__":
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        sys.exit(77)
    os.execv(sys.argv[1], sys.argv[1:])
