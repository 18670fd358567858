// The load client for the bench's HTTP carrier modes: one Node.js process driving the same work
// through each way a page can reach a server, so that the figures compare the servers, not the
// clients:
//   wsecho-ws          a plain WebSocket (npm ws) to wsecho's WebSocket port
//   wsecho-stream      wsecho's HTTP carrier, streaming (src/page/carrier.rs)
//   wsecho-poll        wsecho's HTTP carrier, long-polling
//   socketio-polling   socket.io's HTTP long-polling (npm socket.io-client), peers/socketio_chat.js
// Modes:
//   rtt     one client, one 32-byte message at a time: round trips/s, p50 and p99
//   fanout  MEMBERS join the chat room; TALKERS of them each say RATE messages/s (open loop);
//           deliveries/s heard within the run (every member hears every message, the speaker
//           too; what is still on its way when the run ends is not counted, but is waited for
//           and counted as lost if it never comes) and latency from the say leaving the client
//           to each member hearing it
// Usage: node http_load.js KIND MODE PAGE_PORT --seconds S [--pid PID] [--members N]
//        [--talkers N] [--rate N]. Prints key=value pairs.
"use strict";

const http = require("http");
const net = require("net");
const fs = require("fs");
const WebSocket = require("ws");
const { io } = require("socket.io-client");

const [kind, mode, port] = process.argv.slice(2, 5);
const option = (name, fallback) => {
  const at = process.argv.indexOf(`--${name}`);
  return at > 0 ? Number(process.argv[at + 1]) : fallback;
};
const SECONDS = option("seconds", 3);
const PID = option("pid", 0);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
const now = () => Number(process.hrtime.bigint() / 1000n); // µs

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, agent,
      headers: { "Content-Length": body ? body.length : 0 } }, (res) => {
      const parts = [];
      res.on("data", (part) => parts.push(part));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(parts) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

// The up requests of wsecho's sessions go over kept-alive sockets written and read by hand, as
// npm ws writes the WebSocket's frames: Node's http.request took about 235 µs of the client's
// CPU per round trip, 70% of an HTTP round trip, so the rtt row measured Node's HTTP client and
// not the server. A socket carries one request at a time and goes back to the pool once its
// response has come; the pool grows as requests overlap, as the http.Agent's does.
const idleUpSockets = [];

// A new up socket: a close fails the request it carries, or takes it out of the pool.
function upSocket() {
  const socket = net.connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  socket.failUp = null;
  socket.on("error", () => {}); // the close that follows fails the request in flight
  socket.on("close", () => {
    const at = idleUpSockets.indexOf(socket);
    if (at >= 0) idleUpSockets.splice(at, 1);
    if (socket.failUp) socket.failUp(new Error("up socket closed"));
  });
  return socket;
}

function leanPost(path, body) {
  return new Promise((resolve, reject) => {
    const socket = idleUpSockets.pop() || upSocket();
    let received = Buffer.alloc(0);
    const finish = (error, status) => {
      socket.removeListener("data", onData);
      socket.failUp = null;
      if (error) { socket.destroy(); reject(error); } else { resolve({ status }); }
    };
    const onData = (part) => {
      received = received.length ? Buffer.concat([received, part]) : part;
      const headEnd = received.indexOf("\r\n\r\n");
      if (headEnd < 0) return;
      const head = received.toString("latin1", 0, headEnd);
      const length = Number((/\r\ncontent-length: *(\d+)/i.exec(head) || [0, 0])[1]);
      if (received.length < headEnd + 4 + length) return;
      const status = Number(head.slice(9, 12));
      const closing = /\r\nconnection: *close/i.test(head);
      finish(null, status);
      if (closing) socket.destroy(); else idleUpSockets.push(socket);
    };
    socket.failUp = finish;
    socket.on("data", onData);
    const head = `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${body.length}\r\n\r\n`;
    socket.write(Buffer.concat([Buffer.from(head, "latin1"), body]));
  });
}

// Records: KIND SEQ " " LEN "\n" PAYLOAD (src/session/records.rs).
function parseRecords(buffer) {
  const records = [];
  let at = 0;
  for (;;) {
    const newline = buffer.indexOf(10, at);
    if (newline < 0) break;
    const head = buffer.toString("latin1", at, newline);
    const space = head.indexOf(" ");
    const length = Number(head.slice(space + 1));
    if (newline + 1 + length > buffer.length) break;
    records.push({ kind: head[0], seq: Number(head.slice(1, space)), payload: buffer.subarray(newline + 1, newline + 1 + length) });
    at = newline + 1 + length;
  }
  return { records, rest: buffer.subarray(at) };
}

// A session over wsecho's HTTP carrier, `stream` or `poll`.
async function httpSession(path, how, onText) {
  const opened = await request("POST", `/session/open${path}`);
  if (opened.status !== 200) throw new Error(`open: ${opened.status} ${opened.body}`);
  const id = JSON.parse(opened.body).session;
  let next = 1, up = 1, queue = [], posting = false, closed = false;
  const deliver = (records) => {
    for (const record of records) {
      if (record.seq < next || record.kind === "k") continue;
      next = record.seq + 1;
      if (record.kind === "t") onText(record.payload.toString());
    }
  };
  const down = () => {
    if (closed) return;
    const req = http.get({ host: "127.0.0.1", port, agent, path: `/session/${id}/down?from=${next}&mode=${how}` }, (res) => {
      let pending = Buffer.alloc(0);
      res.on("data", (part) => {
        const parsed = parseRecords(pending.length ? Buffer.concat([pending, part]) : part);
        pending = Buffer.from(parsed.rest);
        deliver(parsed.records);
      });
      res.on("end", down);
    });
    req.on("error", () => setTimeout(down, 100));
  };
  const post = () => {
    if (posting || queue.length === 0 || closed) return;
    posting = true;
    const sending = queue;
    queue = [];
    leanPost(`/session/${id}/up`, Buffer.concat(sending)).then((answer) => {
      if (answer.status !== 204) throw new Error(`up: ${answer.status}`);
      posting = false; post();
    }).catch(
      () => { posting = false; queue = sending.concat(queue); setTimeout(post, 100); });
  };
  down();
  return {
    send(text) {
      const payload = Buffer.from(text);
      queue.push(Buffer.concat([Buffer.from(`t${up} ${payload.length}\n`), payload]));
      up += 1;
      post();
    },
    close() { closed = true; },
  };
}

async function webSocket(path, onText) {
  const config = JSON.parse((await request("GET", "/config.json")).body);
  const socket = new WebSocket(`ws://127.0.0.1:${config.wsPort}${path}`, { perMessageDeflate: false });
  await new Promise((resolve, reject) => { socket.on("open", resolve); socket.on("error", reject); });
  socket.on("message", (data) => onText(data.toString()));
  return { send: (text) => socket.send(text), close: () => socket.close() };
}

async function socketIo(path, onText) {
  const socket = io(`http://127.0.0.1:${port}`, { transports: ["polling"], forceNew: true,
    reconnection: false, query: path === "/chat" ? { room: "chat" } : {} });
  await new Promise((resolve, reject) => { socket.on("connect", resolve); socket.on("connect_error", reject); });
  socket.on("message", (text) => onText(text));
  return { send: (text) => socket.send(text), close: () => socket.close() };
}

function connect(path, onText) {
  switch (kind) {
    case "wsecho-ws": return webSocket(path, onText);
    case "wsecho-stream": return httpSession(path, "stream", onText);
    case "wsecho-poll": return httpSession(path, "poll", onText);
    case "socketio-polling": return socketIo(path, onText);
    default: throw new Error(`unknown kind ${kind}`);
  }
}

function percentile(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : NaN;
}

function cpuSeconds(pid) {
  if (!pid) return 0;
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
}

async function rtt() {
  let waiting = null;
  const client = await connect("/echo", (text) => waiting && waiting(text));
  const message = "x".repeat(32);
  const times = [];
  const end = now() + SECONDS * 1e6;
  while (now() < end) {
    const start = now();
    await new Promise((resolve) => { waiting = resolve; client.send(message); });
    times.push(now() - start);
  }
  client.close();
  times.sort((a, b) => a - b);
  return { msgs_per_s: times.length / SECONDS, p50_us: percentile(times, 0.5), p99_us: percentile(times, 0.99) };
}

async function fanout() {
  const members = option("members", 1000), talkers = option("talkers", 5), rate = option("rate", 2);
  const latencies = [];
  let welcomed = 0, inWindow = 0, windowEnd = Infinity;
  const clients = [];
  for (let i = 0; i < members; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(members, i + 50); j++) {
      batch.push(connect("/chat", (text) => {
        const message = JSON.parse(text);
        if (message.type === "welcome") welcomed += 1;
        if (message.type === "said") {
          const at = now();
          latencies.push(at - Number(message.text));
          if (at <= windowEnd) inWindow += 1;
        }
      }).then((client) => { client.send(JSON.stringify({ type: "join", name: `m${j}` })); return client; }));
    }
    clients.push(...await Promise.all(batch));
  }
  const ready = Date.now() + 120000;
  while (welcomed < members && Date.now() < ready) await new Promise((r) => setTimeout(r, 50));
  if (welcomed < members) throw new Error(`only ${welcomed} of ${members} joined`);
  await new Promise((r) => setTimeout(r, 1000)); // the joins' chatter settles
  latencies.length = 0;
  windowEnd = now() + SECONDS * 1e6;
  const cpuStart = process.cpuUsage(), serverStart = cpuSeconds(PID);
  // Open loop: every 10 ms each talker sends what its rate says is due by then, however late
  // the timer fired, so that a busy client offers the same load to every server.
  let said = 0;
  const started = now();
  const ticker = setInterval(() => {
    const due = Math.floor(((now() - started) / 1e6) * rate);
    while (said < due * talkers) {
      clients[said % talkers].send(JSON.stringify({ type: "say", text: String(now()) }));
      said += 1;
    }
  }, 10);
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  clearInterval(ticker);
  const expected = said * members;
  const drain = Date.now() + 10000;
  while (latencies.length < expected && Date.now() < drain) await new Promise((r) => setTimeout(r, 50));
  const cpu = process.cpuUsage(cpuStart);
  const serverCpu = cpuSeconds(PID) - serverStart;
  clients.forEach((client) => client.close());
  const sorted = latencies.slice().sort((a, b) => a - b);
  // Deliveries heard within the window: a server that falls behind delivers fewer.
  return { deliveries_per_s: inWindow / SECONDS, offered_per_s: expected / SECONDS,
    lost: expected - latencies.length, p50_us: percentile(sorted, 0.5), p99_us: percentile(sorted, 0.99),
    client_cpu: (cpu.user + cpu.system) / 1e6 / SECONDS, server_cpu: serverCpu / SECONDS };
}

(mode === "rtt" ? rtt() : fanout()).then((figures) => {
  console.log(Object.entries(figures).map(([k, v]) => `${k}=${Number.isFinite(v) ? v.toFixed(3) : "nan"}`).join(" "));
  process.exit(0);
}, (error) => {
  console.error(`http_load: ${error.stack || error}`);
  process.exit(1);
});
