// wsecho's room page: listen to room NAME (?room=NAME, or typed) on /rooms/NAME and show what
// is published to it, live. Messages reach the page as text nodes, never as HTML. Plain ES5,
// like the other pages; transport.js gets the WebSocket (native, or the Flash bridge).
(function () {
  "use strict";

  var transport = window.wsechoTransport;
  var $ = function (id) { return document.getElementById(id); };
  var roomInput = $("room"), logList = $("log");
  var socket = null;
  var retry = new transport.Retry();

  function log(className, text) {
    transport.logLine(logList, transport.clock(null), [[className, text]]);
  }

  var setStatus = transport.setStatus;

  function listen(name) {
    if (!/^[A-Za-z0-9_.\-]{1,64}$/.test(name)) {
      setStatus("A room name is 1 to 64 of A-Z a-z 0-9 _ . -", "error");
      return;
    }
    if (socket) { socket.onclose = null; socket.close(1000, "another room"); socket = null; }
    var url = transport.urlFor("/rooms/" + name);
    if (url === "") {
      setStatus("The server's WebSocket port is unknown (config.json could not be read); reload the page.", "error");
      return;
    }
    $("room-name").innerHTML = "";
    $("room-name").appendChild(document.createTextNode(name));
    try {
      socket = transport.open(url);
    } catch (e) {
      setStatus("Cannot connect to " + url + ": " + e.message, "error");
      return;
    }
    var opened = false;
    setStatus("Connecting to " + url + " via " + transport.name() + "…");
    socket.onopen = function () {
      opened = true;
      retry.succeeded();
      setStatus("Listening to room " + name + " via " + transport.name(socket) + ".", "open");
    };
    socket.onmessage = function (event) {
      log("received", typeof event.data === "string" ? event.data : "(" + event.data.size + " bytes)");
    };
    socket.onclose = function (event) {
      socket = null;
      var how = transport.describeClose(event);
      if (opened && retry.worthIt(event)) {
        var delay = retry.later(function () { listen(name); });
        setStatus("Disconnected: " + how + ". Listening again in " + delay + " s.", "error");
      } else if (!opened) {
        setStatus("Could not listen to " + url + " (" + how + "). Is publishing on " +
          "(--publish-token-file)?", "error");
      } else {
        setStatus("Disconnected: " + how + ".", "error");
      }
    };
  }

  $("room-form").onsubmit = function () { retry.stop(); listen(roomInput.value); return false; };
  transport.start(function (config, note, configProblem) {
    if (configProblem) { setStatus(configProblem + ": reload the page, or check that wsecho serves it.", "error"); }
    $("flash-note").appendChild(document.createTextNode(note));
    roomInput.disabled = false;
    $("listen").disabled = false;
    var wanted = /[?&]room=([^&]*)/.exec(location.search);
    if (wanted) {
      roomInput.value = decodeURIComponent(wanted[1]);
      listen(roomInput.value);
    }
  });
})();
