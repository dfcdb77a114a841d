#!/usr/bin/python3
# langs_superserver.py - an inetd-like server: for each of two connections it
# starts a handler with subprocess.Popen(stdin=conn, stdout=conn) (vfork()) and
# closes its own copy at once, before any byte of the connection was read: the
# handler (a python line echo, under the shim too) takes the connection over
# and runs the handshake. argv: port. Prints "READY" and "HANDLER STATUS".
import socket, subprocess, sys

HANDLER = 'import sys\nsys.stdout.write("echo " + sys.stdin.readline())\nsys.stdout.flush()\n'
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', int(sys.argv[1])))
ls.listen(4)
print('READY', flush=True)
for _ in range(2):
    c, _ = ls.accept()
    p = subprocess.Popen([sys.executable, '-c', HANDLER], stdin=c, stdout=c)
    c.close()
    print('HANDLER %d' % p.wait(), flush=True)
