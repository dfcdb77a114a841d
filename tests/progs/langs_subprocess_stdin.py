#!/usr/bin/python3
# langs_subprocess_stdin.py - a server that gives its client's connection to
# children as stdin and as stdout (subprocess.run(..., stdin=conn) and
# stdout=conn: vfork(), dup2 onto fd 0 or 1, close_range of the rest, exec),
# then answers on it itself. The session stays in this process, so the children
# are refused it, and this process must go on speaking TLS with its own stdin
# and stdout untouched. argv: port. Prints "READY", "CHILD STATUS" for each
# child, "STDIN BYTES" (what its own stdin, at its end, reads) and writes
# "PARENT-STDOUT" on its own fd 1 with os.write.
import os, socket, subprocess, sys

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', int(sys.argv[1])))
ls.listen(4)
print('READY', flush=True)
c, _ = ls.accept()
c.sendall(b'got ' + c.recv(100))
r = subprocess.run(['/bin/cat'], stdin=c, capture_output=True, timeout=20)
print('CHILD %d' % r.returncode, flush=True)
r = subprocess.run(['/bin/echo', 'from-child'], stdout=c, stderr=subprocess.DEVNULL, timeout=20)
print('CHILD %d' % r.returncode, flush=True)
print('STDIN %r' % os.read(0, 100), flush=True)
os.write(1, b'PARENT-STDOUT\n')
c.sendall(b'parent still here\n')
c.close()
os.write(1, b'PARENT-STDOUT after close\n')
