// wsecho's echo page: connect, send, see each echo with its round-trip time.
// Plain ES5 on purpose: the browsers that need the Flash fallback predate modern JavaScript.
// Getting a WebSocket (native, or web-socket-js over Flash) is transport.js's part.
(function () {
  "use strict";

  var transport = window.wsechoTransport;
  var $ = function (id) { return document.getElementById(id); };
  var urlInput = $("url"), messageInput = $("message"), logList = $("log");
  var socket = null;
  var opened = false;
  // After an unexpected close the page connects again by itself (see transport.js).
  var retry = new transport.Retry();
  var retryUrl = "";
  // Messages sent and not yet echoed, oldest first: {text, at}. An incoming message gets a
  // round-trip time only when it is the echo of the oldest; anything else is shown without.
  var pending = [];

  function now() {
    return window.performance && performance.now ? performance.now() : new Date().getTime();
  }

  function log(kind, text, rttMs) {
    var parts = [[kind, text]];
    if (rttMs !== undefined) { parts.push(["rtt", "(" + rttMs.toFixed(2) + " ms)"]); }
    transport.logLine(logList, transport.clock(null, true), parts);
  }

  var setStatus = transport.setStatus;

  function setConnected(connected) {
    $("connect").disabled = connected;
    $("disconnect").disabled = !connected && !retry.waiting();
    $("send").disabled = !connected;
    messageInput.disabled = !connected;
    urlInput.disabled = connected;
  }

  function retryLater(why) {
    var delay = retry.later(function () { connect(retryUrl); });
    setConnected(false);
    setStatus(why + " Reconnecting in " + delay + " s (attempt " + retry.attempts +
      "); Disconnect stops trying.", "error");
  }

  // Connect to the address typed, or (retrying) to `again`.
  function connect(again) {
    var retrying = typeof again === "string";
    var url = retrying ? again : urlInput.value.replace(/^\s+|\s+$/g, "");
    if (!/^wss?:\/\//.test(url)) {
      setStatus("The address must start with ws:// or wss://, as in ws://HOST:PORT/echo.", "error");
      return;
    }
    try {
      socket = transport.open(url);
    } catch (e) {
      setStatus("Cannot connect to " + url + ": " + e.message, "error");
      return;
    }
    opened = false;
    pending = [];
    setConnected(true);
    setStatus("Connecting to " + url + " via " + transport.name() + "…");
    socket.onopen = function () {
      opened = true;
      setStatus("Connected to " + url + " via " + transport.name(socket) +
        (retrying ? " (reconnected)." : "."), "open");
      // What the server agreed to, such as compression (permessage-deflate), if anything.
      var extensions = socket.extensions ? " (" + socket.extensions + ")" : "";
      log("info", (retrying ? "reconnected via " : "connected via ") + transport.name(socket) + extensions);
      retry.succeeded();
      messageInput.focus();
    };
    socket.onmessage = function (event) {
      var text = typeof event.data === "string" ? event.data : "[binary message]";
      var rtt;
      if (pending.length > 0 && pending[0].text === event.data) {
        rtt = now() - pending.shift().at;
      }
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
      var how = transport.describeClose(event);
      if (retrying && !opened) {
        retryLater("Could not reconnect to " + url + " (" + how + ").");
        return;
      }
      if (opened && retry.worthIt(event)) {
        log("error", "closed: " + how);
        retryUrl = url;
        retryLater("Closed: " + how + ".");
        return;
      }
      if (!opened) {
        setStatus("Could not connect to " + url + " (" + how +
          "). Is wsecho running, and are the host and port right?", "error");
        log("error", "connection failed: " + how);
        return;
      }
      var clean = event.code === 1000;
      setStatus("Closed: " + how + ". Press Connect to start again.", clean ? "" : "error");
      log(clean ? "info" : "error", "closed: " + how);
    };
  }

  function send() {
    var text = messageInput.value;
    if (!socket || !opened || text === "") { return; }
    if (text !== "quit") { pending.push({ text: text, at: now() }); }
    socket.send(text);
    log("sent", "sent: " + text);
    messageInput.value = "";
    messageInput.focus();
  }

  $("connect-form").onsubmit = function () { retry.stop(); connect(); return false; };
  $("send-form").onsubmit = function () { send(); return false; };
  $("disconnect").onclick = function () {
    if (retry.waiting()) {
      retry.stop();
      setConnected(false);
      setStatus("Stopped reconnecting. Press Connect to start again.");
      return;
    }
    if (socket) { socket.close(1000, "bye"); }
  };
  $("clear").onclick = function () { logList.innerHTML = ""; };
  transport.start(function (config, note, configProblem) {
    if (config) { urlInput.value = transport.urlFor(config.wsPath); }
    if (configProblem) {
      setStatus(configProblem + ": type the WebSocket address (ws://HOST:PORT/echo) and Connect.", "error");
    }
    $("flash-note").appendChild(document.createTextNode(note));
    $("connect").disabled = false; // the transport is settled: connecting may begin
  });
})();
