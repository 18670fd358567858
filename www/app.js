// wsecho page: connect, send, see each echo with its round-trip time.
// Plain ES5 on purpose: the browsers that need the Flash fallback predate modern JavaScript.
// Only the standard WebSocket API is used; where a browser has none (or the URL says
// ?flash=1), web-socket-js is loaded first and provides the same API over Flash.
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

  var $ = function (id) { return document.getElementById(id); };
  var urlInput = $("url"), messageInput = $("message"), logList = $("log"), statusLine = $("status");
  var socket = null;
  var opened = false;
  var pending = []; // send times of messages not yet echoed; echoes come back in order
  var config = null; // /config.json: wsPort, wsPath, policyPort, flashFallback
  var forceFlash = /[?&]flash=1(&|$)/.test(location.search);

  function now() {
    return window.performance && performance.now ? performance.now() : new Date().getTime();
  }

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) { s = "0" + s; }
    return s;
  }

  function clock() {
    var d = new Date();
    return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) +
      "." + pad(d.getMilliseconds(), 3);
  }

  function log(kind, text, rttMs) {
    var item = document.createElement("li");
    var time = document.createElement("span");
    time.className = "time";
    time.appendChild(document.createTextNode(clock()));
    var body = document.createElement("span");
    body.className = kind;
    body.appendChild(document.createTextNode(text));
    item.appendChild(time);
    item.appendChild(body);
    if (rttMs !== undefined) {
      var rtt = document.createElement("span");
      rtt.className = "rtt";
      rtt.appendChild(document.createTextNode("(" + rttMs.toFixed(2) + " ms)"));
      item.appendChild(rtt);
    }
    logList.appendChild(item);
    logList.scrollTop = logList.scrollHeight;
  }

  function setStatus(text, kind) {
    statusLine.className = "status" + (kind ? " " + kind : "");
    statusLine.innerHTML = "";
    statusLine.appendChild(document.createTextNode(text));
  }

  function setConnected(connected) {
    $("connect").disabled = connected;
    $("disconnect").disabled = !connected;
    $("send").disabled = !connected;
    messageInput.disabled = !connected;
    urlInput.disabled = connected;
  }

  function transportName() {
    return window.WebSocket && window.WebSocket.__isFlashImplementation
      ? "Flash bridge (web-socket-js)" : "native WebSocket";
  }

  function describeClose(event) {
    var meaning = CLOSE_MEANINGS[event.code] || "see RFC 6455";
    var text = "code " + event.code + ": " + meaning;
    if (event.reason) { text += ' "' + event.reason + '"'; }
    return text;
  }

  function connect() {
    var url = urlInput.value.replace(/^\s+|\s+$/g, "");
    if (!window.WebSocket) {
      setStatus("This browser has no WebSocket support, and the Flash fallback is not loaded.", "error");
      return;
    }
    if (!/^wss?:\/\//.test(url)) {
      setStatus("The address must start with ws:// (for example ws://localhost:8087/echo).", "error");
      return;
    }
    if (window.WebSocket.__isFlashImplementation) {
      pointFlashAtPolicy(url);
    }
    try {
      socket = new window.WebSocket(url);
    } catch (e) {
      setStatus("Cannot connect to " + url + ": " + e.message, "error");
      return;
    }
    opened = false;
    pending = [];
    setConnected(true);
    setStatus("Connecting to " + url + " via " + transportName() + "…");
    socket.onopen = function () {
      opened = true;
      setStatus("Connected to " + url + " via " + transportName() + ".", "open");
      log("info", "connected via " + transportName());
      messageInput.focus();
    };
    socket.onmessage = function (event) {
      var sentAt = pending.shift();
      var rtt = sentAt === undefined ? undefined : now() - sentAt;
      var text = typeof event.data === "string" ? event.data : "[binary message]";
      log("received", "received: " + text, rtt);
    };
    socket.onerror = function () {
      if (!opened) {
        setStatus("Could not connect to " + url + ". Is wsecho running, and are the host and port right?", "error");
      }
    };
    socket.onclose = function (event) {
      setConnected(false);
      socket = null;
      if (!opened) {
        setStatus("Could not connect to " + url + " (" + describeClose(event) +
          "). Is wsecho running, and are the host and port right?", "error");
        log("error", "connection failed: " + describeClose(event));
        return;
      }
      var clean = event.code === 1000;
      setStatus("Closed: " + describeClose(event) + ". Press Connect to start again.", clean ? "" : "error");
      log(clean ? "info" : "error", "closed: " + describeClose(event));
    };
  }

  function send() {
    var text = messageInput.value;
    if (!socket || !opened || text === "") { return; }
    pending.push(now());
    socket.send(text);
    log("sent", "sent: " + text);
    if (text === "quit") { pending.pop(); }
    messageInput.value = "";
    messageInput.focus();
  }

  function setFlashNote(text) {
    var note = $("flash-note");
    note.innerHTML = "";
    note.appendChild(document.createTextNode(text));
  }

  // Flash asks for a socket policy before connecting: tell it where ours is answered, the
  // policy port when one runs, else the WebSocket port itself (wsecho answers it inline).
  function pointFlashAtPolicy(url) {
    var match = /^wss?:\/\/([^\/:]+|\[[^\]]+\])(?::(\d+))?/.exec(url);
    if (!match) { return; }
    var port = (config && config.policyPort) || match[2] || 80;
    window.WebSocket.loadFlashPolicyFile("xmlsocket://" + match[1] + ":" + port);
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

  // Load swfobject.js and web_socket.js (fetched by `make assets` into vendor/), then `done`.
  function loadFlashBridge(done) {
    window.WEB_SOCKET_SWF_LOCATION = "vendor/WebSocketMain.swf";
    if (forceFlash) { window.WEB_SOCKET_FORCE_FLASH = true; }
    loadScript("vendor/swfobject.js", function (swfobjectLoaded) {
      if (!swfobjectLoaded) { return done("its files could not be loaded"); }
      loadScript("vendor/web_socket.js", function (bridgeLoaded) {
        if (!bridgeLoaded) { return done("its files could not be loaded"); }
        if (!window.WebSocket || !window.WebSocket.__isFlashImplementation) {
          return done("Flash Player was not found in this browser");
        }
        repairMessageEvents();
        done(null);
      });
    });
  }

  function describeFallback(problem) {
    $("connect").disabled = false; // the transport is settled: connecting may begin
    var hasNative = window.WebSocket && !window.WebSocket.__isFlashImplementation;
    if (problem) {
      setFlashNote("Flash fallback unavailable: " + problem + "." +
        (hasNative ? " Using this browser's native WebSocket." : ""));
    } else if (window.WebSocket && window.WebSocket.__isFlashImplementation) {
      setFlashNote("Flash fallback in use: web-socket-js over Flash" +
        (forceFlash ? " (forced by ?flash=1)." : ", as this browser has no native WebSocket."));
    } else {
      setFlashNote("Native WebSocket in use. Add ?flash=1 to the address to try the Flash fallback.");
    }
  }

  function start() {
    var needFlash = forceFlash || !window.WebSocket;
    if (!needFlash) { return describeFallback(null); }
    if (!config || !config.flashFallback) {
      return describeFallback("its files are not on the server (run `make assets` there)");
    }
    loadFlashBridge(describeFallback);
  }

  function loadConfig(done) {
    var defaultUrl = "ws://" + (location.hostname || "localhost") + ":8087/echo";
    urlInput.value = defaultUrl;
    var request = new XMLHttpRequest();
    request.open("GET", "config.json", true);
    request.onreadystatechange = function () {
      if (request.readyState !== 4) { return; }
      if (request.status !== 200) {
        setStatus("Could not read config.json (HTTP " + request.status + "); guessing " + defaultUrl + ".", "error");
        return done();
      }
      config = JSON.parse(request.responseText);
      urlInput.value = "ws://" + location.hostname + ":" + config.wsPort + config.wsPath;
      done();
    };
    request.send(null);
  }

  $("connect-form").onsubmit = function () { connect(); return false; };
  $("send-form").onsubmit = function () { send(); return false; };
  $("disconnect").onclick = function () { if (socket) { socket.close(1000, "bye"); } };
  $("clear").onclick = function () { logList.innerHTML = ""; };
  loadConfig(start);
})();
