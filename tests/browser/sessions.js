// The HTTP carrier of sessions in Chromium, behind real nginx configured as a hostile network
// would be (the page passes, the WebSocket upgrade does not):
//   blocked-upgrade: /echo's upgrade reaches wsecho without Upgrade/Connection (426) and
//     /chat's is answered 403 by nginx: the echo page echoes via HTTP streaming, and a chat
//     page behind that nginx and a native chat page talk both ways;
//   buffering-proxy: nginx also holds responses back until they end (BUFFERING): the page
//     finds its stream stuck and long-polls;
//   resume-websocket, resume-http: nginx (passing upgrades, or not) is stopped for 5 s while
//     another member says 20 messages; the page comes back and shows all 20 in order, none
//     twice, and nobody saw it leave;
//   resume-too-late: away past a 2 s window, the page says messages may have been missed and
//     rejoins once the network is back.
// Used by run.js, which passes its helpers.
"use strict";

const { spawn } = require("child_process");
const fs = require("fs");
const path = require("path");
const net = require("net");

// A proxy that holds every response back until it ends: buffering on whatever the server says,
// and compressing each response whole (as compressing proxies and antivirus gateways do;
// nginx's buffering alone still passes a stream's small chunks as they come).
const BUFFERING = "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering; " +
  "gzip on; gzip_proxied any; gzip_min_length 0; gzip_types application/octet-stream;";

// /echo's upgrade stripped (wsecho sees a plain GET), /chat's refused outright.
const BREAK_UPGRADES = (wsPort) => `
        location = /echo {
            proxy_pass http://127.0.0.1:${wsPort};
            proxy_http_version 1.1;
            proxy_set_header Upgrade "";
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }
        location = /chat { return 403; }`;

// Upgrades passed on, as deploy/nginx.conf does.
const PASS_UPGRADES = (wsPort) => `
        location ~ ^/(echo|chat)$ {
            proxy_pass http://127.0.0.1:${wsPort};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }`;

module.exports = function sessionTests(h) {
  // nginx on `port` in front of `server`, passing the page and breaking the upgrade.
  async function startHostileNginx(server, port, { buffering, passUpgrades }, cleanup) {
    const work = fs.mkdtempSync(path.join(h.SCRATCH, "hostile-"));
    // Run as root, nginx's workers are another user: they must reach their temp folders.
    fs.chmodSync(work, 0o755);
    const pagePort = new URL(server.pageUrl).port;
    const temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
      .map((kind) => `    ${kind}_temp_path ${work}/${kind};\n`).join("");
    const passPage = `
            proxy_pass http://127.0.0.1:${pagePort};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            ${buffering ? BUFFERING : ""}`;
    fs.writeFileSync(path.join(work, "nginx.conf"), `daemon off;
pid ${work}/nginx.pid;
error_log ${work}/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
${temp}    server {
        listen 127.0.0.1:${port};
        ${passUpgrades ? PASS_UPGRADES(server.wsPort) : BREAK_UPGRADES(server.wsPort)}
        location / {${passPage}
        }
    }
}
`);
    const nginx = fs.existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx";
    const child = spawn(nginx, ["-c", path.join(work, "nginx.conf"), "-p", work, "-e", path.join(work, "error.log")],
      { stdio: "ignore" });
    const stack = { child, url: `http://127.0.0.1:${port}/` };
    stack.stop = () => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.on("exit", () => resolve());
      child.kill("SIGTERM");
    });
    cleanup.push(() => h.stop(child));
    const deadline = Date.now() + h.WAIT_MS;
    while (Date.now() < deadline) {
      const listening = await new Promise((resolve) => {
        const socket = net.connect(port, "127.0.0.1", () => { socket.destroy(); resolve(true); });
        socket.on("error", () => resolve(false));
      });
      if (listening) return stack;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`nginx did not listen on ${port}: ${fs.existsSync(path.join(work, "error.log")) ? fs.readFileSync(path.join(work, "error.log"), "utf8") : ""}`);
  }

  // A chat page behind nginx (passing upgrades or not) loses its network for 5 s while
  // another member says 20 messages; once nginx is back, it shows all 20 once, in order, and
  // nobody saw it leave.
  async function resume(browser, cleanup, passUpgrades, carrier) {
    const server = await h.startWsecho(["--trusted-proxy", "127.0.0.1"]);
    cleanup.push(() => h.stop(server.child));
    const port = await h.freePort();
    let proxy = await startHostileNginx(server, port, { buffering: false, passUpgrades }, cleanup);
    const away = await h.newPage(browser);
    const talker = await h.newPage(browser);
    await h.joinChat(away, `${proxy.url}chat.html`, "away");
    h.check(new RegExp(`via ${carrier}`).test(await carrierOf(away)), `the page should use ${carrier}`);
    await h.joinChat(talker, `${server.pageUrl}chat.html`, "talker");
    await away.waitForFunction(() => document.querySelectorAll("#members li").length === 2);
    await proxy.stop();
    const said = Array.from({ length: 20 }, (_, n) => `while away ${n + 1}`);
    for (const message of said) {
      await h.say(talker, message);
      await h.hears(talker, "talker", message);
    }
    await new Promise((resolve) => setTimeout(resolve, 5000));
    proxy = await startHostileNginx(server, port, { buffering: false, passUpgrades }, cleanup);
    await h.hears(away, "talker", said[said.length - 1]);
    const heard = await away.$$eval("#log li", (items) => items
      .filter((li) => li.querySelector(".from") && li.querySelector(".from").textContent === "talker:")
      .map((li) => li.querySelector(".received").textContent));
    h.check(JSON.stringify(heard) === JSON.stringify(said),
      `the page should show the 20 messages once each, in order: ${JSON.stringify(heard)}`);
    const talkerLog = await h.text(talker, "#log");
    h.check(!/away left/.test(talkerLog), `the room should not have seen the page leave: ${talkerLog}`);
    h.check(/In the room as away/.test(await carrierOf(away)), "still in the room");
    await h.say(away, "back from away");
    await h.hears(talker, "away", "back from away");
    await talker.close();
    return away;
  }

  // The page's status line names the carrier in use.
  async function carrierOf(page) {
    return h.text(page, "#status");
  }

  return [
    {
      name: "blocked-upgrade",
      async run(browser, cleanup) {
        const server = await h.startWsecho(["--trusted-proxy", "127.0.0.1"]);
        cleanup.push(() => h.stop(server.child));
        const proxy = await startHostileNginx(server, await h.freePort(), { buffering: false }, cleanup);
        const page = await h.newPage(browser);
        await page.goto(proxy.url);
        await h.converse(page, "HTTP streaming", ["hello over HTTP", "ünïcode ✓ too"]);
        const behind = await h.newPage(browser);
        const native = await h.newPage(browser);
        await h.joinChat(behind, `${proxy.url}chat.html`, "behind");
        const status = await carrierOf(behind);
        h.check(/via HTTP streaming/.test(status), `the chat behind the proxy should use HTTP: ${status}`);
        await h.joinChat(native, `${server.pageUrl}chat.html`, "native");
        h.check(/via native WebSocket/.test(await carrierOf(native)), "the direct page uses WebSocket");
        await h.say(behind, "from behind the proxy");
        await h.hears(native, "behind", "from behind the proxy");
        await h.say(native, "from a native page");
        await h.hears(behind, "native", "from a native page");
        await native.close();
        await behind.close();
        return page;
      },
    },
    {
      name: "buffering-proxy",
      async run(browser, cleanup) {
        const server = await h.startWsecho(["--trusted-proxy", "127.0.0.1"]);
        cleanup.push(() => h.stop(server.child));
        const proxy = await startHostileNginx(server, await h.freePort(), { buffering: true }, cleanup);
        const page = await h.newPage(browser);
        await page.goto(proxy.url);
        await h.converse(page, "HTTP long-polling", ["polled", "and polled again"]);
        return page;
      },
    },
    {
      name: "resume-websocket",
      run: (browser, cleanup) => resume(browser, cleanup, true, "native WebSocket"),
    },
    {
      name: "resume-http",
      run: (browser, cleanup) => resume(browser, cleanup, false, "HTTP streaming"),
    },
    {
      name: "resume-too-late",
      async run(browser, cleanup) {
        // Away longer than the window: the page says messages may be missing, and rejoins.
        const server = await h.startWsecho(["--trusted-proxy", "127.0.0.1", "--resume-window", "2"]);
        cleanup.push(() => h.stop(server.child));
        const port = await h.freePort();
        let proxy = await startHostileNginx(server, port, { buffering: false, passUpgrades: true }, cleanup);
        const page = await h.newPage(browser);
        await h.joinChat(page, `${proxy.url}chat.html`, "late");
        await proxy.stop();
        await page.waitForFunction(() => /messages may have been missed/.test(document.getElementById("log").textContent),
          null, { timeout: 30000 });
        proxy = await startHostileNginx(server, port, { buffering: false, passUpgrades: true }, cleanup);
        await page.waitForFunction(() => /In the room as late, .*\(rejoined\)/.test(document.getElementById("status").textContent),
          null, { timeout: 40000 });
        return page;
      },
    },
  ];
};
