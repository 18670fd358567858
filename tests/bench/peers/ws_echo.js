// Node.js `ws` echo, with its defaults but for permessage-deflate, turned on: every message
// straight back, compressed when the client offers compression (only the deflate mode does).
// Run: node ws_echo.js PORT [CERT KEY]   (with a certificate and key: wss, over node's https)
"use strict";
const { WebSocketServer } = require("ws");
const { listening } = require("./ws_listen");

const server = new WebSocketServer({ ...listening(process.argv), perMessageDeflate: true });
server.on("connection", (socket) => {
  socket.on("message", (data, isBinary) => socket.send(data, { binary: isBinary }));
});
