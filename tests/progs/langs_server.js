// langs_server.js - node's http.createServer (libuv's event loop, keep-alive).
// argv: port body-file.
//   GET /big    -> 200 with the body file
//   POST /echo  -> 200 with the request body sent back
// Prints "READY" once listening, "CONN" for each connection, "REQ METHOD PATH
// LENGTH" for each request and "ERR CODE" when a client's connection fails.
'use strict';
const http = require('http');
const fs = require('fs');

const port = +process.argv[2];
const body = fs.readFileSync(process.argv[3]);

function reply(res, data) {
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length });
  res.end(data);
}

const server = http.createServer((req, res) => {
  const parts = [];
  req.on('data', d => parts.push(d));
  req.on('end', () => {
    const data = Buffer.concat(parts);
    if (req.method === 'GET' && req.url === '/big') {
      console.log(`REQ GET /big ${body.length}`);
      reply(res, body);
    } else if (req.method === 'POST' && req.url === '/echo') {
      console.log(`REQ POST /echo ${data.length}`);
      reply(res, data);
    } else {
      console.log(`REQ ${req.method} ${req.url} 0`);
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
    }
  });
});
server.on('connection', () => console.log('CONN'));
server.on('clientError', (err, socket) => {
  console.log(`ERR ${err.code || err.message}`);
  socket.destroy();
});
server.listen(port, '127.0.0.1', () => console.log('READY'));
