// The part of wsecho's pages that gets a WebSocket, shared by the echo, chat and room pages:
// read config.json, use the browser's own WebSocket (for the page's own server, as a session
// that survives a dropped network and falls back to HTTP where a proxy breaks WebSocket: see
// session.js) or, where there is none (or the URL says ?flash=1), load web-socket-js, which
// offers the same API over Flash; then open sockets.
// Also what every page shows the same way: its status line and the lines of its log.
// Plain ES5 on purpose: the browsers that need the Flash fallback predate modern JavaScript.
(function () {
  "use strict";

  var CLOSE_MEANINGS = {
    1000: "normal closure",
    1001: "going away (server shutting down)",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no code given",
    1006: "connection lost without a close frame",
    1007: "invalid UTF-8 in a text message",
    1008: "policy violation",
    1009: "message too big",
    1011: "server error or keepalive timeout"
  };

  var forceFlash = /[?&]flash=1(&|$)/.test(location.search);
  var config = null; // /config.json: wsPort, wsPath, chatPath, policyPort, flashFallback

  function usingFlash() {
    return !!(window.WebSocket && window.WebSocket.__isFlashImplementation);
  }

  // What carries `socket` (one from `open`), or without one, what a new one would try first.
  function name(socket) {
    if (socket && socket.carrier) { return socket.carrier; }
    return usingFlash() ? "Flash bridge (web-socket-js)" : "native WebSocket";
  }

  function describeClose(event) {
    var text = "code " + event.code + ": " + (CLOSE_MEANINGS[event.code] || "see RFC 6455");
    if (event.reason) { text += ' "' + event.reason + '"'; }
    return text;
  }

  // The URL of `path` on the WebSocket port of the host this page came from, which
  // config.json names; or, when it names none (a proxy in front passes the WebSocket paths
  // on), on the host and port of the page itself. wss:// for a page loaded over https (a
  // browser refuses ws:// there). "" while config.json is unknown.
  function urlFor(path) {
    if (!config) { return ""; }
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    if (config.wsPort === null) { return scheme + location.host + path; }
    return scheme + (location.hostname || "localhost") + ":" + config.wsPort + path;
  }

  // A ws:// or wss:// URL's host ([1]) and port ([2], if it names one).
  var WS_HOST = /^wss?:\/\/([^\/:]+|\[[^\]]+\])(?::(\d+))?/;

  // Flash asks for a socket policy before connecting: tell it where ours is answered, the
  // policy port when one runs, else the WebSocket port itself (wsecho answers it inline).
  function pointFlashAtPolicy(url) {
    var match = WS_HOST.exec(url);
    if (!match) { return; }
    var port = (config && config.policyPort) || match[2] || 80;
    window.WebSocket.loadFlashPolicyFile("xmlsocket://" + match[1] + ":" + port);
  }

  // A new WebSocket to `url` over whichever transport is in use; throws as the constructor does.
  function open(url) {
    if (!window.WebSocket) {
      throw new Error("this browser has no WebSocket support, and the Flash fallback is not loaded");
    }
    if (usingFlash() && /^wss:/.test(url)) {
      // Its handshake reaches the server and is refused there (tests/browser/run.js,
      // flash-bridge-wss): no signature_algorithms, which TLS 1.2 and later require.
      throw new Error("the Flash fallback cannot open wss://, as web-socket-js's own TLS is " +
        "older than what wsecho (TLS 1.2 and 1.3) and most servers accept; open the page over " +
        "http:// to use ws://, or use a browser with WebSocket");
    }
    if (usingFlash()) {
      pointFlashAtPolicy(url);
      return new window.WebSocket(url);
    }
    // The page's own server: a session, which survives a dropped network and falls back to
    // HTTP where the network breaks WebSocket (session.js).
    var host = WS_HOST.exec(url);
    var sessions = window.wsechoSession;
    if (host && host[1] === location.hostname && sessions && sessions.available()) {
      return new sessions.Session(url);
    }
    return new window.WebSocket(url);
  }

  function loadScript(src, done) {
    var script = document.createElement("script");
    var finished = false;
    function finish(ok) {
      if (!finished) { finished = true; done(ok); }
    }
    script.onload = function () { finish(true); };
    script.onerror = function () { finish(false); };
    script.onreadystatechange = function () { // IE 8
      if (script.readyState === "loaded" || script.readyState === "complete") { finish(true); }
    };
    script.src = src;
    document.getElementsByTagName("head")[0].appendChild(script);
  }

  // web_socket.js builds its message events with initMessageEvent(..., null), which current
  // browsers reject, so onmessage would never fire; build them the modern way where possible.
  function repairMessageEvents() {
    if (typeof window.MessageEvent !== "function") { return; }
    window.WebSocket.prototype.__createMessageEvent = function (type, data) {
      return new window.MessageEvent(type, { data: data });
    };
  }

  // Load swfobject.js and web_socket.js (fetched by `make assets` into vendor/), then `done`
  // with null, or with what went wrong.
  function loadFlashBridge(done) {
    window.WEB_SOCKET_SWF_LOCATION = "vendor/WebSocketMain.swf";
    if (forceFlash) { window.WEB_SOCKET_FORCE_FLASH = true; }
    loadScript("vendor/swfobject.js", function (swfobjectLoaded) {
      if (!swfobjectLoaded) { return done("its files could not be loaded"); }
      loadScript("vendor/web_socket.js", function (bridgeLoaded) {
        if (!bridgeLoaded) { return done("its files could not be loaded"); }
        if (!usingFlash()) { return done("Flash Player was not found in this browser"); }
        repairMessageEvents();
        done(null);
      });
    });
  }

  // One sentence on the transport in use, and why.
  function describeTransport(problem) {
    var hasNative = window.WebSocket && !usingFlash();
    if (problem) {
      return "Flash fallback unavailable: " + problem + "." +
        (hasNative ? " Using this browser's native WebSocket." : "");
    }
    if (usingFlash()) {
      return "Flash fallback in use: web-socket-js over Flash" +
        (forceFlash ? " (forced by ?flash=1)." : ", as this browser has no native WebSocket.");
    }
    return "Native WebSocket in use, or HTTP where a proxy breaks WebSocket. Add ?flash=1 to " +
      "the address to try the Flash fallback.";
  }

  // Read config.json and settle the transport, then ready(configOrNull, note, configProblem).
  function start(ready) {
    var request = new XMLHttpRequest();
    request.open("GET", "config.json", true);
    request.onreadystatechange = function () {
      if (request.readyState !== 4) { return; }
      var configProblem = null;
      if (request.status === 200) {
        config = JSON.parse(request.responseText);
      } else {
        configProblem = "Could not read config.json (HTTP " + request.status + ")";
      }
      var settled = function (problem) { ready(config, describeTransport(problem), configProblem); };
      if (!forceFlash && window.WebSocket) { return settled(null); }
      if (!config || !config.flashFallback) {
        return settled("its files are not on the server (run `make assets` there)");
      }
      loadFlashBridge(settled);
    };
    request.send(null);
  }

  // Trying again after an unexpected close of an open connection (the server went away,
  // restarted, or could not take a message just then), waiting longer after each failed try.
  // Closes that say the client itself is at fault are not retried.
  var RETRY_CODES = { 1001: true, 1006: true, 1011: true, 1012: true, 1013: true, 1014: true };
  var RETRY_DELAYS_S = [1, 2, 4, 8, 15, 30];

  function Retry() {
    this.timer = null;
    this.attempts = 0;
  }

  // Whether a close of an open connection calls for trying again.
  Retry.prototype.worthIt = function (event) { return !!RETRY_CODES[event.code]; };

  // Run `action` after the next delay; returns that delay in seconds.
  Retry.prototype.later = function (action) {
    var self = this;
    var delay = RETRY_DELAYS_S[Math.min(this.attempts, RETRY_DELAYS_S.length - 1)];
    this.attempts += 1;
    this.timer = setTimeout(function () { self.timer = null; action(); }, delay * 1000);
    return delay;
  };

  Retry.prototype.waiting = function () { return this.timer !== null; };

  // Connected again: the next failure starts from the shortest delay.
  Retry.prototype.succeeded = function () { this.attempts = 0; };

  Retry.prototype.stop = function () {
    if (this.timer) { clearTimeout(this.timer); }
    this.timer = null;
    this.attempts = 0;
  };

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) { s = "0" + s; }
    return s;
  }

  // The time of day of `millis` (null: now), with its milliseconds when `precise`.
  function clock(millis, precise) {
    var d = millis ? new Date(millis) : new Date();
    return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) +
      (precise ? "." + pad(d.getMilliseconds(), 3) : "");
  }

  // A line of the log `list`: the time `when`, then each [className, text] part, as text nodes
  // (whatever a client sent never reaches the page as HTML).
  function logLine(list, when, parts) {
    var item = document.createElement("li");
    var all = [["time", when]].concat(parts);
    for (var i = 0; i < all.length; i++) {
      var span = document.createElement("span");
      span.className = all[i][0];
      // Each part isolated in its own direction: a name or message in another script, or
      // one holding bidi controls, cannot reorder the rest of its line.
      span.dir = "auto";
      span.appendChild(document.createTextNode(all[i][1]));
      item.appendChild(span);
    }
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  // The page's status line (#status): `text`, styled as `kind` ("open", "error" or none).
  function setStatus(text, kind) {
    var status = document.getElementById("status");
    status.className = "status" + (kind ? " " + kind : "");
    status.innerHTML = "";
    status.appendChild(document.createTextNode(text));
  }

  window.wsechoTransport = {
    start: start,
    open: open,
    name: name,
    urlFor: urlFor,
    describeClose: describeClose,
    Retry: Retry,
    clock: clock,
    logLine: logLine,
    setStatus: setStatus
  };
})();
