#!/usr/bin/python3
# langs_echo_client.py - a real TLS client (python's ssl, not under the shim) for
# an echo server: argv: port ca conns body-file. Opens CONNS connections (name
# "localhost" verified against CA), then round-robin sends each a chunk of the
# body (sizes vary, so chunks and records do not line up) and reads the same
# number of bytes back, until every connection has sent the whole body.
# Prints "ECHO I LENGTH SHA256" for what each connection got back, then "DONE".
# argv: port plain: sends a cleartext line instead and prints "PLAIN-REPLY N
# BYTES" (what came back before the end) or "PLAIN-ERROR NAME".
import hashlib, socket, ssl, sys


def plain(port):
    s = socket.create_connection(('127.0.0.1', port), timeout=20)
    got = b''
    try:
        s.sendall(b'cleartext must not reach the program\n')
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
        print('PLAIN-REPLY %d %r' % (len(got), got[:40]))
    except OSError as e:
        print('PLAIN-ERROR %s' % type(e).__name__)


def echo(port, ca, conns, body):
    ctx = ssl.create_default_context(cafile=ca)
    socks = [ctx.wrap_socket(socket.create_connection(('127.0.0.1', port), timeout=20),
                             server_hostname='localhost') for _ in range(conns)]
    sent = [0] * conns
    hashes = [hashlib.sha256() for _ in range(conns)]
    got = [0] * conns
    step = 0
    while min(sent) < len(body):
        for i, s in enumerate(socks):
            if sent[i] >= len(body):
                continue
            n = min(1000 + (step * 7919 + i * 4099) % 30000, len(body) - sent[i])
            s.sendall(body[sent[i]:sent[i] + n])
            sent[i] += n
            while got[i] < sent[i]:
                d = s.recv(sent[i] - got[i])
                if not d:
                    raise SystemExit('connection %d ended after %d bytes' % (i, got[i]))
                hashes[i].update(d)
                got[i] += len(d)
            step += 1
    for i, s in enumerate(socks):
        print('ECHO %d %d %s' % (i + 1, got[i], hashes[i].hexdigest()))
        s.close()
    print('DONE')


if sys.argv[2] == 'plain':
    plain(int(sys.argv[1]))
else:
    with open(sys.argv[4], 'rb') as f:
        echo(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), f.read())
