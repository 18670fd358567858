// Where the Node ws peers listen: `PORT` on 127.0.0.1, plain; `PORT CERT KEY`: TLS (wss), through
// an https server of node's own that the WebSocket server upgrades from.
"use strict";
const fs = require("fs");
const https = require("https");

function listening(argv) {
  const port = Number(argv[2]);
  if (argv.length < 5) return { host: "127.0.0.1", port };
  const server = https.createServer({ cert: fs.readFileSync(argv[3]), key: fs.readFileSync(argv[4]) });
  server.listen(port, "127.0.0.1");
  return { server };
}

module.exports = { listening };
