// Node.js `ws` echo, with its defaults (no compression): every message straight back.
// Run: node ws_echo.js PORT
"use strict";
const { WebSocketServer } = require("ws");

const server = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2]) });
server.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
