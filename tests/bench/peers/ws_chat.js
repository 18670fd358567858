// Node.js `ws` serving wsecho's /chat protocol (see README), for the fanout bench: one room,
// a broadcast is a loop over `wss.clients`, the message encoded once.
// Run: node ws_chat.js PORT [CERT KEY]   (with a certificate and key: wss, over node's https)
"use strict";
const { WebSocketServer, WebSocket } = require("ws");
const { listening } = require("./ws_listen");

const server = new WebSocketServer(listening(process.argv));
const names = new Map(); // socket -> name

function broadcast(object, except) {
  const text = JSON.stringify(object);
  for (const client of server.clients) {
    if (client !== except && names.has(client) && client.readyState === WebSocket.OPEN) client.send(text);
  }
}

server.on("connection", (socket) => {
  socket.on("message", (data) => {
    let request;
    try { request = JSON.parse(data.toString()); } catch (e) {
      return socket.send(JSON.stringify({ type: "error", reason: "not JSON" }));
    }
    const name = names.get(socket);
    if (request.type === "join" && name === undefined && typeof request.name === "string") {
      let given = request.name.trim();
      const taken = new Set(names.values());
      for (let n = 2; taken.has(given); n++) given = `${request.name.trim()} ${n}`;
      names.set(socket, given);
      socket.send(JSON.stringify({ type: "welcome", name: given, members: [...names.values()] }));
      broadcast({ type: "joined", name: given, count: names.size }, socket);
    } else if (request.type === "say" && name !== undefined && typeof request.text === "string") {
      broadcast({ type: "said", from: name, text: request.text, at: Date.now() });
    } else {
      socket.send(JSON.stringify({ type: "error", reason: "bad request" }));
    }
  });
  socket.on("close", () => {
    const name = names.get(socket);
    if (name === undefined) return;
    names.delete(socket);
    broadcast({ type: "left", name, count: names.size });
  });
});
