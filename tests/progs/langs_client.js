// langs_client.js - node's http client with a keep-alive agent (one socket):
// GET /big, POST /echo with the body file, GET /big, one after another on one
// connection. argv: port body-file. Prints "RESP N STATUS LENGTH SHA256" for
// each response and "SOCKETS N" (how many sockets the agent made), then "DONE".
'use strict';
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');

const port = +process.argv[2];
const body = fs.readFileSync(process.argv[3]);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let sockets = 0;
const plan = [['GET', '/big'], ['POST', '/echo'], ['GET', '/big']];

function one(i) {
  if (i === plan.length) {
    console.log(`SOCKETS ${sockets}`);
    console.log('DONE');
    agent.destroy();
    return;
  }
  const [method, path] = plan[i];
  const req = http.request({ host: '127.0.0.1', port, method, path, agent,
    headers: method === 'POST' ? { 'Content-Length': body.length } : {} }, res => {
    const h = crypto.createHash('sha256');
    let len = 0;
    res.on('data', d => { h.update(d); len += d.length; });
    res.on('end', () => {
      console.log(`RESP ${i + 1} ${res.statusCode} ${len} ${h.digest('hex')}`);
      one(i + 1);
    });
  });
  req.on('socket', s => { if (!s.langsSeen) { s.langsSeen = true; sockets++; } });
  req.on('error', e => { console.log(`ERROR ${e.code || ''} ${e.message}`); process.exitCode = 1; });
  req.end(method === 'POST' ? body : undefined);
}
one(0);
