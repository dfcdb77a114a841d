#!/usr/bin/python3
# langs_https.py - the real TLS server (python's ssl, not under the shim) that
# tests/e2e/test_langs.c points each language's HTTP client at.
# argv: port body-file cert key.
#   GET /big    -> 200 with the body file (Content-Length)
#   POST /echo  -> 200 with the request body sent back
# HTTP/1.1 keep-alive. Prints "READY" once listening, "CONN" for every TLS
# connection it accepts and "REQ METHOD PATH LENGTH" for every request.
import http.server, socketserver, ssl, sys

port, body_file, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
with open(body_file, 'rb') as f:
    BODY = f.read()


def say(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def setup(self):
        super().setup()
        say('CONN')

    def reply(self, data):
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        say('REQ GET %s %d' % (self.path, len(BODY)))
        if self.path != '/big':
            self.send_error(404)
            return
        self.reply(BODY)

    def do_POST(self):
        n = int(self.headers.get('Content-Length', '0'))
        data = self.rfile.read(n)
        say('REQ POST %s %d' % (self.path, len(data)))
        self.reply(data)

    def log_message(self, fmt, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = Server(('127.0.0.1', port), Handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
say('READY')
srv.serve_forever()
