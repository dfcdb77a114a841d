#!/usr/bin/python3
# langs_subprocess_stdin.py - a server that gives its client's connection to a
# child as stdin (subprocess.run(['/bin/cat'], stdin=conn): vfork(), dup2 onto
# fd 0, close_range of the rest, exec), then answers on it itself. The session
# stays in this process, so the child is refused it (its read fails) and this
# process must go on speaking TLS. argv: port. Prints "READY", "CHILD STATUS".
import socket, subprocess, sys

ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', int(sys.argv[1])))
ls.listen(4)
print('READY', flush=True)
c, _ = ls.accept()
c.sendall(b'got ' + c.recv(100))
r = subprocess.run(['/bin/cat'], stdin=c, capture_output=True, timeout=20)
print('CHILD %d' % r.returncode, flush=True)
c.sendall(b'parent still here\n')
c.close()
