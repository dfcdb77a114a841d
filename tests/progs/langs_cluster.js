// langs_cluster.js - node's cluster module: a primary and two workers sharing
// one listener on 127.0.0.1:PORT (argv: port); NODE_CLUSTER_SCHED_POLICY picks
// who accepts ("none": each worker; "rr": the primary, handing connections to
// the workers). Workers answer "hello from worker PID" and print "REQ PID URL"
// and "ERR CODE" for a client's failed connection; the primary prints "READY"
// once both workers listen.
'use strict';
const cluster = require('cluster');
const http = require('http');

const port = +process.argv[2];
if (cluster.isPrimary) {
  let listening = 0;
  for (let i = 0; i < 2; i++) cluster.fork();
  cluster.on('listening', () => { if (++listening === 2) console.log('READY'); });
} else {
  const server = http.createServer((req, res) => {
    console.log(`REQ ${process.pid} ${req.url}`);
    res.end(`hello from worker ${process.pid}\n`);
  });
  server.on('clientError', (err, socket) => {
    console.log(`ERR ${err.code || err.message}`);
    socket.destroy();
  });
  server.listen(port, '127.0.0.1');
}
