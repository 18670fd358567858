// socket.io (npm) with only its HTTP long-polling transport, serving wsecho's /echo and /chat
// protocols (see README) as `message` events, for the bench's HTTP carrier modes: a socket
// whose handshake query says `room=chat` is a chat member (one room, a broadcast emitted once
// to the room), any other echoes. Run: node socketio_chat.js PORT
"use strict";
const http = require("http");
const { Server } = require("socket.io");

const server = http.createServer();
const io = new Server(server, { transports: ["polling"], maxHttpBufferSize: 1e8 });
const names = new Map(); // socket id -> name

io.on("connection", (socket) => {
  if (socket.handshake.query.room !== "chat") {
    socket.on("message", (data) => socket.send(data));
    return;
  }
  socket.on("message", (data) => {
    let request;
    try { request = JSON.parse(data); } catch (e) {
      return socket.send(JSON.stringify({ type: "error", reason: "not JSON" }));
    }
    const name = names.get(socket.id);
    if (request.type === "join" && name === undefined && typeof request.name === "string") {
      let given = request.name.trim();
      const taken = new Set(names.values());
      for (let n = 2; taken.has(given); n++) given = `${request.name.trim()} ${n}`;
      names.set(socket.id, given);
      socket.send(JSON.stringify({ type: "welcome", name: given, members: [...names.values()] }));
      socket.to("chat").emit("message", JSON.stringify({ type: "joined", name: given, count: names.size }));
      socket.join("chat");
    } else if (request.type === "say" && name !== undefined && typeof request.text === "string") {
      io.to("chat").emit("message", JSON.stringify({ type: "said", from: name, text: request.text, at: Date.now() }));
    } else {
      socket.send(JSON.stringify({ type: "error", reason: "bad request" }));
    }
  });
  socket.on("disconnect", () => {
    const name = names.get(socket.id);
    if (name === undefined) return;
    names.delete(socket.id);
    io.to("chat").emit("message", JSON.stringify({ type: "left", name, count: names.size }));
  });
});

server.listen(Number(process.argv[2]), "127.0.0.1");
