#!/usr/bin/python3
# langs_tls_lines.py - a real TLS client (python's ssl, not under the shim):
# argv: port ca line. Sends LINE, then prints "LINE ..." for every line it
# receives until the end of the stream, then "EOF"; or "SSL-ERROR REASON"
# (a cleartext byte from the server is "wrong version number").
import socket, ssl, sys

ctx = ssl.create_default_context(cafile=sys.argv[2])
try:
    with ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=20),
                         server_hostname='localhost') as s:
        s.sendall(sys.argv[3].encode() + b'\n')
        for line in s.makefile('rb'):
            print('LINE ' + line.decode(errors='replace').rstrip('\n'), flush=True)
        print('EOF', flush=True)
except ssl.SSLError as e:
    print('SSL-ERROR %s' % e.reason, flush=True)
