// wsecho's page in a real browser (headless Debian Chromium driven by playwright-core):
//   1. native WebSocket: connect, two echoes with their round-trip times, quit -> close 1000;
//   2. the Flash bridge: ?flash=1 with Ruffle running the real WebSocketMain.swf, its socket
//      tunnelled through websockify to the WebSocket port;
//   3. no Flash assets on the server: the page says so and still works natively;
//   4. the chat page: two native pages chat, one of them under a hostile name that must show
//      as text;
//   5. the chat page: a native page and a ?flash=1 page (Ruffle) chat with each other;
//   6. the room page shows, live, what a backend publishes with POST /publish/NAME;
//   7. sessions.js: behind nginx that breaks the upgrade, the pages use HTTP, and come back
//      without loss after the network drops.
// Each test starts its own wsecho on free loopback ports. Prints "N passed, N failed" and saves
// a screenshot per test under tests/artifacts/. Every wait is bounded.
"use strict";

const { chromium } = require("playwright-core");
const { spawn, spawnSync } = require("child_process");
const os = require("os");
const fs = require("fs");
const net = require("net");
const path = require("path");
const readline = require("readline");

const ROOT = path.resolve(__dirname, "..", "..");
const WSECHO = process.env.WSECHO_BIN || path.join(ROOT, "target", "debug", "wsecho");
// The build with every feature, `tls` among them (make browser-test builds it into target/full).
const WSECHO_TLS = process.env.WSECHO_TLS_BIN || path.join(ROOT, "target", "full", "debug", "wsecho");
const WEBSOCKIFY = process.env.WEBSOCKIFY_BIN || path.join(__dirname, ".venv", "bin", "websockify");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const RUFFLE = path.join(__dirname, "node_modules", "@ruffle-rs", "ruffle");
const ARTIFACTS = path.join(ROOT, "tests", "artifacts");
const WAIT_MS = 20000; // any single wait
// The run's files (certificates, tokens, nginx's folders), removed when the run ends.
const SCRATCH = fs.mkdtempSync(path.join(os.tmpdir(), "wsecho-browser-"));
fs.chmodSync(SCRATCH, 0o755); // nginx's workers (another user, when run as root) go through it
process.on("exit", () => fs.rmSync(SCRATCH, { recursive: true, force: true }));
const TEST_MS = 90000; // a whole test

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Start wsecho on free ports, serving the page folder `www` (null: the page built into the
// binary); resolve once its log names the page and WebSocket addresses.
function startWsecho(extraArgs, www = path.join(ROOT, "www"), binary = WSECHO) {
  const page = www === null ? [] : ["--www", www];
  const args = ["--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--policy-port", "0", ...page, ...extraArgs];
  const child = spawn(binary, args, { env: { ...process.env, RUST_LOG: "info" }, stdio: ["ignore", "ignore", "pipe"] });
  const server = { child, log: [], pageUrl: null, wsPort: null };
  const ready = new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`wsecho exited early (${code}): ${server.log.join("\n")}`)));
    readline.createInterface({ input: child.stderr }).on("line", (line) => {
      server.log.push(line);
      const page = /page: (https?:\/\/\S+)/.exec(line);
      if (page) server.pageUrl = page[1];
      const ws = /WebSocket: wss?:\/\/[^\s/]+:(\d+)\//.exec(line);
      if (ws) server.wsPort = Number(ws[1]);
      if (server.pageUrl && server.wsPort) resolve(server);
    });
  });
  return withTimeout(ready, WAIT_MS, "wsecho start");
}

// The `tls` build on free ports with a self-signed certificate for 127.0.0.1, made now.
function startWsechoTls(extraArgs, www) {
  const dir = fs.mkdtempSync(path.join(SCRATCH, "tls-"));
  const [cert, key] = [path.join(dir, "cert.pem"), path.join(dir, "key.pem")];
  const made = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
    "-keyout", key, "-out", cert], { encoding: "utf8" });
  if (made.status !== 0) throw new Error(`openssl could not make the test certificate: ${made.stderr}`);
  return startWsecho(["--tls-cert", cert, "--tls-key", key, ...extraArgs], www, WSECHO_TLS);
}

// deploy/nginx.conf with real nginx in front of two instances of `binary` (tests/nginx/check.py
// --serve, `extraArgs` for both): resolves with its https URL and the instances' page ports.
function startNginxStack(binary, extraArgs, cleanup) {
  const stack = spawn("python3", [path.join(ROOT, "tests", "nginx", "check.py"), "--serve", binary, ...extraArgs],
    { stdio: ["pipe", "pipe", "inherit"] });
  cleanup.push(() => stack.stdin.end());
  let instances = [];
  return withTimeout(new Promise((resolve, reject) => {
    stack.on("exit", (code) => reject(new Error(`the nginx stack exited (${code})`)));
    readline.createInterface({ input: stack.stdout }).on("line", (line) => {
      const ports = /^instances: (.*)/.exec(line);
      if (ports) instances = ports[1].split(" ").map(Number);
      const found = /^nginx: (https:\/\/\S+)/.exec(line);
      if (found) resolve({ url: found[1], instances });
    });
  }), WAIT_MS, "nginx stack");
}

// A redis-server of the test's own on a free loopback port; resolves with its URL once it answers.
async function startRedis(cleanup) {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: "ignore" });
  cleanup.push(() => stop(child));
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const answered = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
      socket.on("data", (data) => { socket.destroy(); resolve(data.toString().startsWith("+PONG")); });
      socket.on("error", () => resolve(false));
    });
    if (answered) return `redis://127.0.0.1:${port}`;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`redis-server did not answer on ${port}`);
}

// The count of open /chat connections an instance's /metrics reports.
function openChats(port) {
  return new Promise((resolve, reject) => {
    require("http").get({ host: "127.0.0.1", port, path: "/metrics" }, (response) => {
      let body = "";
      response.on("data", (chunk) => { body += chunk; });
      response.on("end", () => {
        const found = /^wsecho_open_connections\{route="\/chat"\} (\d+)$/m.exec(body);
        resolve(found ? Number(found[1]) : NaN);
      });
    }).on("error", reject);
  });
}

function stop(child) {
  if (child && child.exitCode === null) child.kill("SIGTERM");
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

// websockify accepts WebSocket connections on `listenPort` and opens TCP to `targetPort`.
async function startBridge(targetPort) {
  const port = await freePort();
  const child = spawn(WEBSOCKIFY, [`127.0.0.1:${port}`, `127.0.0.1:${targetPort}`], { stdio: "ignore" });
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const listening = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => { socket.destroy(); resolve(true); });
      socket.on("error", () => resolve(false));
    });
    if (listening) return { child, url: `ws://127.0.0.1:${port}` };
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  stop(child);
  throw new Error(`websockify did not listen on ${port}`);
}

async function newPage(browser, options = {}) {
  const page = await browser.newPage({ viewport: { width: 900, height: 760 }, ...options });
  page.setDefaultTimeout(WAIT_MS);
  page.consoleLines = [];
  page.on("console", (message) => page.consoleLines.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => page.consoleLines.push(`pageerror: ${error.message}`));
  return page;
}

// Ruffle, the Flash Player emulator, runs the real WebSocketMain.swf. It cannot open raw TCP
// from a browser, so its socketProxy tunnels the SWF's socket over a WebSocket to websockify.
async function injectRuffle(page, wsPort, proxyUrl) {
  // Ruffle loads its core and wasm from publicPath: serve them from node_modules.
  await page.route("**/__ruffle__/**", (route) => {
    const name = path.basename(new URL(route.request().url()).pathname);
    const file = path.join(RUFFLE, name);
    if (!fs.existsSync(file)) return route.fulfill({ status: 404, body: "" });
    const contentType = name.endsWith(".wasm") ? "application/wasm" : "text/javascript";
    return route.fulfill({ status: 200, contentType, body: fs.readFileSync(file) });
  });
  await page.addInitScript(({ wsPort, proxyUrl }) => {
    window.RufflePlayer = window.RufflePlayer || {};
    window.RufflePlayer.config = {
      publicPath: "/__ruffle__/",
      polyfills: true,
      autoplay: "on",
      unmuteOverlay: "hidden",
      splashScreen: false,
      warnOnUnsupportedContent: false,
      logLevel: "warn",
      socketProxy: [{ host: "127.0.0.1", port: wsPort, proxyUrl }],
    };
    // Ruffle opens its tunnel with the page's global WebSocket, which web_socket.js replaces
    // with the Flash one: hand tunnel URLs to the browser's own constructor.
    const Native = window.WebSocket;
    let current = Native;
    Object.defineProperty(window, "WebSocket", {
      configurable: true,
      get() { return current; },
      set(Replacement) {
        function Routed(url, protocols, proxyHost, proxyPort, headers) {
          if (typeof url === "string" && url.indexOf(proxyUrl) === 0) {
            return protocols === undefined ? new Native(url) : new Native(url, protocols);
          }
          return new Replacement(url, protocols, proxyHost, proxyPort, headers);
        }
        Object.setPrototypeOf(Routed, Replacement);
        Routed.prototype = Replacement.prototype;
        current = Routed;
      },
    });
  }, { wsPort, proxyUrl });
  await page.addInitScript({ content: fs.readFileSync(path.join(RUFFLE, "ruffle.js"), "utf8") });
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function text(page, selector) {
  return (await page.textContent(selector)) || "";
}

// Connect, send each message and wait for its echo with a round-trip time, then quit.
async function converse(page, transport, messages) {
  await page.waitForFunction(() => !document.getElementById("connect").disabled);
  await page.click("#connect");
  await page.waitForSelector("#status.open");
  const status = await text(page, "#status");
  check(status.includes(`via ${transport}`), `status should name ${transport}: ${status}`);
  for (let i = 0; i < messages.length; i++) {
    await page.fill("#message", messages[i]);
    await page.press("#message", "Enter");
    await page.waitForFunction((n) => document.querySelectorAll("#log .received").length >= n, i + 1);
  }
  const echoes = await page.$$eval("#log li", (items) =>
    items.filter((li) => li.querySelector(".received")).map((li) => li.textContent));
  messages.forEach((message, i) => {
    check(new RegExp(`received: ${message}\\(\\d+\\.\\d\\d ms\\)$`).test(echoes[i]),
      `echo ${i} should be "${message}" with its round-trip time: ${echoes[i]}`);
  });
  await page.fill("#message", "quit");
  await page.press("#message", "Enter");
  await page.waitForFunction(() => /Closed: code 1000/.test(document.getElementById("status").textContent));
  check(!(await page.isEnabled("#send")), "send is disabled once closed");
}

// Open the chat page, join as `name`, and wait for the welcome.
async function joinChat(page, url, name) {
  await page.goto(url);
  await page.waitForFunction(() => !document.getElementById("join").disabled);
  await page.fill("#name", name);
  await page.press("#name", "Enter");
  await page.waitForSelector("#status.open");
}

// Press Leave and wait until Join can be pressed again.
async function leaveChat(page) {
  await page.click("#leave");
  await page.waitForFunction(() => !document.getElementById("join").disabled);
}

async function say(page, message) {
  await page.fill("#text", message);
  await page.press("#text", "Enter");
}

// Wait until the log of `page` has a line from `from` saying `message`.
async function hears(page, from, message) {
  await page.waitForFunction(([from, message]) =>
    Array.from(document.querySelectorAll("#log li")).some((li) =>
      li.querySelector(".from") && li.querySelector(".from").textContent === `${from}:` &&
      li.textContent.endsWith(message)), [from, message]);
}

async function memberNames(page) {
  return page.$$eval("#members li", (items) => items.map((li) => li.textContent));
}

// POST /publish/`room` with `token` on the page at `pageUrl`; resolves with the status.
function publish(pageUrl, room, token, body) {
  return new Promise((resolve, reject) => {
    const url = new URL(`publish/${room}`, pageUrl);
    const request = require("http").request(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Length": Buffer.byteLength(body) },
    }, (response) => { response.resume(); resolve(response.statusCode); });
    request.on("error", reject);
    request.end(body);
  });
}

const HOSTILE_NAME = "<img src=x onerror=alert(1)>";

const tests = [
  {
    name: "native",
    async run(browser, cleanup) {
      const server = await startWsecho([]);
      cleanup.push(() => stop(server.child));
      const page = await newPage(browser);
      await page.goto(server.pageUrl);
      // Chromium compresses what it sends once permessage-deflate is agreed: a long, very
      // compressible message comes back whole all the same.
      const long = "compress me, ".repeat(800);
      await converse(page, "native WebSocket", ["hello", "wsecho ünïcode ✓", long]);
      const note = await text(page, "#flash-note");
      check(note.includes("Native WebSocket in use"), `note: ${note}`);
      const log = await text(page, "#log");
      check(/connected via native WebSocket \(permessage-deflate; client_no_context_takeover\)/.test(log),
        `the page should show the compression agreed: ${log.slice(0, 200)}`);
      return page;
    },
  },
  {
    name: "flash-bridge",
    async run(browser, cleanup) {
      const server = await startWsecho([]);
      cleanup.push(() => stop(server.child));
      const bridge = await startBridge(server.wsPort);
      cleanup.push(() => stop(bridge.child));
      const page = await newPage(browser);
      await injectRuffle(page, server.wsPort, bridge.url);
      await page.goto(`${server.pageUrl}?flash=1`);
      await page.waitForFunction(() => !document.getElementById("connect").disabled);
      const note = await text(page, "#flash-note");
      check(note.includes("Flash fallback in use"), `note: ${note}`);
      await converse(page, "Flash bridge", ["hello flash", "second"]);
      check(server.log.some((line) => line.includes("flash-bridge=likely")),
        "the server should see a client without User-Agent, as web-socket-js is");
      return page;
    },
  },
  {
    name: "no-flash-assets",
    async run(browser, cleanup) {
      // The page built into the binary, which never has the Flash fallback's files: what an
      // installed wsecho serves without --www.
      const server = await startWsecho([], null);
      cleanup.push(() => stop(server.child));
      const page = await newPage(browser);
      await page.goto(`${server.pageUrl}?flash=1`);
      await page.waitForFunction(() => !document.getElementById("connect").disabled);
      const note = await text(page, "#flash-note");
      check(/Flash fallback unavailable: its files are not on the server/.test(note), `note: ${note}`);
      check(note.includes("Using this browser's native WebSocket"), `note: ${note}`);
      await converse(page, "native WebSocket", ["still works"]);
      return page;
    },
  },
  {
    name: "reconnect",
    async run(browser, cleanup) {
      // The server goes away (1001) and comes back on the same ports: the echo page reconnects
      // and the chat page rejoins by themselves, saying so in their status lines.
      const [http, ws] = [await freePort(), await freePort()];
      const ports = ["--http", `127.0.0.1:${http}`, "--ws", `127.0.0.1:${ws}`];
      const first = await startWsecho(ports);
      cleanup.push(() => stop(first.child));
      const page = await newPage(browser);
      await page.goto(first.pageUrl);
      await page.waitForFunction(() => !document.getElementById("connect").disabled);
      await page.click("#connect");
      await page.waitForSelector("#status.open");
      const chat = await newPage(browser);
      await joinChat(chat, `${first.pageUrl}chat.html`, "ada");
      stop(first.child);
      await page.waitForFunction(() => /Closed: code 1001.*Reconnecting in \d+ s/.test(document.getElementById("status").textContent));
      await chat.waitForFunction(() => /Left the room: code 1001.*Rejoining in \d+ s/.test(document.getElementById("status").textContent));
      if (first.child.exitCode === null && first.child.signalCode === null) {
        await withTimeout(new Promise((resolve) => first.child.on("exit", resolve)), WAIT_MS, "wsecho exit");
      }
      const second = await startWsecho(ports);
      cleanup.push(() => stop(second.child));
      await page.waitForFunction(() => /\(reconnected\)/.test(document.getElementById("status").textContent),
        null, { timeout: 20000 });
      await page.fill("#message", "back again");
      await page.press("#message", "Enter");
      await page.waitForFunction(() => /received: back again/.test(document.getElementById("log").textContent));
      await chat.waitForFunction(() => /In the room as ada, .*\(rejoined\)/.test(document.getElementById("status").textContent),
        null, { timeout: 20000 });
      await say(chat, "back in the room");
      await hears(chat, "ada", "back in the room");
      await chat.close();
      return page;
    },
  },
  {
    name: "through-nginx",
    async run(browser, cleanup) {
      // deploy/nginx.conf with real nginx in front of two instances (tests/nginx/check.py
      // --serve): the page over https, its WebSocket over wss on the page's own host and port.
      const { url } = await startNginxStack(WSECHO, [], cleanup);
      // The certificate is the test's own, made a moment ago.
      const page = await newPage(browser, { ignoreHTTPSErrors: true });
      await page.goto(url);
      await page.waitForFunction(() => !document.getElementById("connect").disabled);
      const wsUrl = await page.inputValue("#url");
      const expected = url.replace("https://", "wss://") + "echo";
      check(wsUrl === expected, `the page should connect to ${expected}, not ${wsUrl}`);
      await converse(page, "native WebSocket", ["through nginx", "over wss"]);
      return page;
    },
  },
  {
    name: "https-wss",
    async run(browser, cleanup) {
      // The `tls` build: the page over https (the test's own certificate, so errors ignored)
      // opens wss:// on the WebSocket port, and echoes.
      const server = await startWsechoTls([]);
      cleanup.push(() => stop(server.child));
      check(server.pageUrl.startsWith("https://"), `the page should be on https: ${server.pageUrl}`);
      const page = await newPage(browser, { ignoreHTTPSErrors: true });
      await page.goto(server.pageUrl);
      await page.waitForFunction(() => !document.getElementById("connect").disabled);
      const wsUrl = await page.inputValue("#url");
      const expected = `wss://127.0.0.1:${server.wsPort}/echo`;
      check(wsUrl === expected, `the page should connect to ${expected}, not ${wsUrl}`);
      await converse(page, "native WebSocket", ["over wss", "from https"]);
      return page;
    },
  },
  {
    name: "flash-bridge-wss",
    async run(browser, cleanup) {
      // web-socket-js's own TLS (as3crypto, inside WebSocketMain.swf, run by Ruffle) against
      // the rustls port: its handshake must fail, and the server must say why.
      const server = await startWsechoTls([]);
      cleanup.push(() => stop(server.child));
      const bridge = await startBridge(server.wsPort);
      cleanup.push(() => stop(bridge.child));
      const page = await newPage(browser, { ignoreHTTPSErrors: true });
      await injectRuffle(page, server.wsPort, bridge.url);
      await page.goto(`${server.pageUrl}?flash=1`);
      await page.waitForFunction(() => !document.getElementById("connect").disabled);
      const note = await text(page, "#flash-note");
      check(note.includes("Flash fallback in use"), `note: ${note}`);
      // The page says at once that this cannot work, and how to do without it.
      await page.click("#connect");
      await page.waitForFunction(() => /cannot open wss:\/\//.test(document.getElementById("status").textContent));
      const status = await text(page, "#status");
      check(status.includes("open the page over http:// to use ws://"), `status: ${status}`);
      // Why: the SWF's own handshake, tried all the same, is refused by the server.
      const url = `wss://127.0.0.1:${server.wsPort}/echo`;
      await page.evaluate((url) => { window.probe = new window.WebSocket(url); }, url);
      const refused = (line) => line.includes("wsecho::server::websocket") && line.includes("TLS handshake failed");
      await withTimeout((async () => {
        while (!server.log.some(refused)) await new Promise((resolve) => setTimeout(resolve, 100));
      })(), WAIT_MS, "the server's line on the Flash bridge's TLS handshake");
      check(!server.log.some((line) => / open 127\.0\.0\.1/.test(line)), "nothing may have opened");
      console.log(`  flash-bridge-wss: ${server.log.find(refused).replace(/^.*dropped: /, "")}`);
      return page;
    },
  },
  {
    name: "chat-across-instances",
    async run(browser, cleanup) {
      // Two instances sharing the chat room through Redis, behind nginx, which sends the two
      // pages' WebSockets to different instances (round robin): they chat all the same.
      const redis = await startRedis(cleanup);
      const { url, instances } = await startNginxStack(WSECHO_TLS, ["--redis", redis], cleanup);
      const ann = await newPage(browser, { ignoreHTTPSErrors: true });
      const bob = await newPage(browser, { ignoreHTTPSErrors: true });
      await joinChat(ann, `${url}chat.html`, "ann");
      await joinChat(bob, `${url}chat.html`, "bob");
      const open = await Promise.all(instances.map(openChats));
      check(open.join(",") === "1,1", `one page on each instance, not ${open.join(",")}`);
      await bob.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
      const names = await memberNames(bob);
      check(names.sort().join("|") === "ann|bob", `bob sees the members ${names.join("|")}`);
      await say(ann, "hello from one instance");
      await hears(bob, "ann", "hello from one instance");
      await say(bob, "and back from the other");
      await hears(ann, "bob", "and back from the other");
      return bob;
    },
  },
  {
    name: "chat-native",
    async run(browser, cleanup) {
      const server = await startWsecho([]);
      cleanup.push(() => stop(server.child));
      const ann = await newPage(browser);
      const mallory = await newPage(browser);
      const dialogs = [];
      for (const page of [ann, mallory]) page.on("dialog", (dialog) => { dialogs.push(dialog.message()); dialog.dismiss(); });
      await ann.goto(server.pageUrl);
      await ann.click("a[href='chat.html']");
      await joinChat(ann, `${server.pageUrl}chat.html`, "ann");
      await joinChat(mallory, `${server.pageUrl}chat.html`, HOSTILE_NAME);
      await ann.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
      const names = await memberNames(ann);
      check(names.join("|") === `ann|${HOSTILE_NAME}`, `ann sees the members ${names.join("|")}`);
      await say(mallory, "hello ann <b>bold?</b>");
      await hears(ann, HOSTILE_NAME, "hello ann <b>bold?</b>");
      await say(ann, "hi there");
      await hears(mallory, "ann", "hi there");
      const injected = await ann.$$eval("#log img, #members img, #log b", (found) => found.length);
      check(injected === 0 && dialogs.length === 0, "a hostile name or text must show as text, never run");
      await mallory.close();
      await ann.waitForFunction(() => /left \(1 here\)/.test(document.getElementById("log").textContent));
      return ann;
    },
  },
  {
    name: "room-live",
    async run(browser, cleanup) {
      const dir = fs.mkdtempSync(path.join(SCRATCH, "publish-"));
      const tokenFile = path.join(dir, "token");
      fs.writeFileSync(tokenFile, "browser-token\n");
      const server = await startWsecho(["--publish-token-file", tokenFile]);
      cleanup.push(() => stop(server.child));
      const page = await newPage(browser);
      await page.goto(`${server.pageUrl}room.html?room=news`);
      await page.waitForSelector("#status.open");
      for (const text of ["first <b>news</b>", "second ✓"]) {
        check(await publish(server.pageUrl, "news", "browser-token", text) === 200, "the publish is taken");
        await page.waitForFunction((text) =>
          Array.from(document.querySelectorAll("#log .received")).some((item) => item.textContent === text), text);
      }
      check(await publish(server.pageUrl, "news", "wrong", "nope") === 401, "a wrong token gets 401");
      const shown = await page.$$eval("#log .received", (items) => items.map((item) => item.textContent));
      check(JSON.stringify(shown) === JSON.stringify(["first <b>news</b>", "second ✓"]),
        `the page shows each publish once, as text: ${JSON.stringify(shown)}`);
      return page;
    },
  },
  {
    name: "chat-flash",
    async run(browser, cleanup) {
      const server = await startWsecho([]);
      cleanup.push(() => stop(server.child));
      const bridge = await startBridge(server.wsPort);
      cleanup.push(() => stop(bridge.child));
      const native = await newPage(browser);
      const flash = await newPage(browser);
      await injectRuffle(flash, server.wsPort, bridge.url);
      await joinChat(native, `${server.pageUrl}chat.html`, "native");
      await joinChat(flash, `${server.pageUrl}chat.html?flash=1`, "flash");
      const status = await text(flash, "#status");
      check(status.includes("via Flash bridge"), `the ?flash=1 page should use the bridge: ${status}`);
      await say(flash, "from the Flash bridge ✓");
      await hears(native, "flash", "from the Flash bridge ✓");
      await say(native, "from a native page");
      await hears(flash, "native", "from a native page");
      await flash.screenshot({ path: path.join(ARTIFACTS, "browser-chat-flash-bridge-side.png") }).catch(() => {});
      // As users would: both leave and join again, and once both pages let them (the message
      // field enabled), each says something at once; 20 times, and each must hear the other
      // every time.
      // (The field used to be enabled as Join was pressed, before the server had the member:
      // over the bridge, what the native page said then never reached the Flash page, and
      // what the Flash page said was not sent.)
      for (let round = 1; round <= 20; round++) {
        const step = (what, promise) => promise.catch((error) => {
          throw new Error(`round ${round}, ${what}: ${error.message}`);
        });
        await step("leaving", Promise.all([native, flash].map(leaveChat)));
        const pages = [[native, "native"], [flash, "flash"]];
        await Promise.all(pages.map(async ([page, name]) => {
          await page.fill("#name", name);
          await page.press("#name", "Enter");
          await step(`${name} joining`,
            page.waitForFunction(() => !document.getElementById("text").disabled));
        }));
        await Promise.all(pages.map(([page, name]) => say(page, `${name} says ${round}`)));
        await step("the Flash page hearing", hears(flash, "native", `native says ${round}`));
        await step("the native page hearing", hears(native, "flash", `flash says ${round}`));
      }
      return native;
    },
  },
];

// Sessions over HTTP behind a hostile proxy (sessions.js).
tests.push(...require("./sessions")({
  startWsecho, newPage, converse, joinChat, say, hears, check, text, stop, freePort, WAIT_MS, SCRATCH,
}));

async function main() {
  for (const [what, file] of [["wsecho", WSECHO], ["chromium", CHROMIUM], ["websockify", WEBSOCKIFY]]) {
    if (!fs.existsSync(file)) {
      console.error(`browser tests: ${what} not found at ${file} (make test installs it; Chromium: apt-get install chromium)`);
      console.log("0 passed, 1 failed");
      process.exit(1);
    }
  }
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  let passed = 0;
  let failed = 0;
  // BROWSER_TESTS=name,name runs only those (while working on one).
  const only = (process.env.BROWSER_TESTS || "").split(",").filter(Boolean);
  for (const test of tests.filter((t) => only.length === 0 || only.includes(t.name))) {
    const cleanup = [];
    let page = null;
    const started = Date.now();
    try {
      page = await withTimeout(test.run(browser, cleanup), TEST_MS, test.name);
      passed++;
      console.log(`ok     ${test.name} (${Date.now() - started} ms)`);
    } catch (error) {
      failed++;
      console.log(`FAILED ${test.name}: ${error.message}`);
      const pages = browser.contexts().flatMap((context) => context.pages());
      page = page || pages[pages.length - 1];
      if (page) console.log(page.consoleLines.slice(-15).map((line) => `  console ${line}`).join("\n"));
      // What each page's status line said when the test gave up.
      for (const open of pages) {
        const status = await open.textContent("#status", { timeout: 1000 }).catch(() => null);
        if (status !== null) console.log(`  status of ${open.url()}: ${status}`);
      }
    }
    if (page) {
      await page.screenshot({ path: path.join(ARTIFACTS, `browser-${test.name}.png`) }).catch(() => {});
      await page.context().close().catch(() => {});
    }
    cleanup.reverse().forEach((step) => step());
  }
  await browser.close();
  console.log(`browser: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((error) => {
  console.error(`browser tests could not run: ${error.stack || error}`);
  console.log("browser: 0 passed, 1 failed");
  process.exit(1);
});
