"""Runs a command on a pseudo-terminal, answering each passphrase prompt.

usage: ttyrun.py PASSPHRASE COMMAND... ; the command's exit status is returned,
and what it writes to the terminal goes to our stderr."""
import os
import pty
import sys

passphrase = sys.argv[1].encode() + b"\n"
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
seen = b""
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    seen += data
    sys.stderr.buffer.write(data)
    low = seen.lower()
    if b"passphrase" in low or b"password" in low:
        # answer every prompt (age asks twice when encrypting)
        os.write(fd, passphrase)
        seen = b""
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
