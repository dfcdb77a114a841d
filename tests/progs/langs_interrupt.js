// langs_interrupt.js - node's way out of a request that gets no answer: the
// request's timeout, then destroy() (argv: port, of a server that never
// answers). Prints the events in order: "TIMEOUT", "ERROR CODE MESSAGE", "CLOSE".
'use strict';
const http = require('http');

const req = http.get({ host: '127.0.0.1', port: +process.argv[2], path: '/', timeout: 1000 },
  () => console.log('RESPONSE'));
req.on('timeout', () => { console.log('TIMEOUT'); req.destroy(); });
req.on('error', e => console.log(`ERROR ${e.code} ${e.message}`));
req.on('close', () => console.log('CLOSE'));
