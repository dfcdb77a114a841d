#!/usr/bin/python3
# langs_silent_tls.py - a real TLS server (python's ssl, not under the shim) that
# completes each handshake and never answers: it reads until the client goes.
# argv: port cert key. Prints "READY", then "HANDSHAKE" for each client.
import socket, ssl, sys, threading

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', port))
ls.listen(16)
print('READY', flush=True)


def hold(c):
    try:
        with ctx.wrap_socket(c, server_side=True) as s:
            print('HANDSHAKE', flush=True)
            while s.recv(65536):
                pass
    except (OSError, ssl.SSLError):
        pass


while True:
    c, _ = ls.accept()
    threading.Thread(target=hold, args=(c,), daemon=True).start()
