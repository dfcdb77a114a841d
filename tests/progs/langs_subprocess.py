#!/usr/bin/python3
# langs_subprocess.py - python's http.server (HTTP/1.1, keep-alive) whose
# handler runs a child with subprocess.run before it answers: subprocess
# vfork()s and the child closes every fd it does not pass (close_range) before
# exec. argv: port body-file.
#   GET /big    -> 200 with the body file
#   POST /echo  -> 200 with the request body sent back
# Prints "READY", "CHILD OUTPUT STATUS" for each child and "REQ METHOD PATH
# LENGTH" for each request.
import http.server, subprocess, sys

port, body_file = int(sys.argv[1]), sys.argv[2]
with open(body_file, 'rb') as f:
    BODY = f.read()


def say(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def child(self):
        r = subprocess.run(['/bin/echo', 'spawned'], capture_output=True)
        say('CHILD %s %d' % (r.stdout.decode().strip(), r.returncode))

    def reply(self, data):
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.child()
        say('REQ GET %s %d' % (self.path, len(BODY)))
        self.reply(BODY)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get('Content-Length', '0')))
        self.child()
        say('REQ POST %s %d' % (self.path, len(data)))
        self.reply(data)

    def log_message(self, fmt, *args):
        pass


srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), Handler)
say('READY')
srv.serve_forever()
