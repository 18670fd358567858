// Node.js `ws` echo, with its defaults but for permessage-deflate, turned on: every message
// straight back, compressed when the client offers compression (only the deflate mode does).
// Run: node ws_echo.js PORT
"use strict";
const { WebSocketServer } = require("ws");

const server = new WebSocketServer({
  host: "127.0.0.1",
  port: Number(process.argv[2]),
  perMessageDeflate: true,
});
server.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
