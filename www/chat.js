// wsecho's chat page: join the room with a name, see who is in it, talk.
// Speaks the JSON protocol of /chat (see README). Everything a client sent reaches the page as
// text nodes, never as HTML. Plain ES5, like the echo page; transport.js gets the WebSocket.
(function () {
  "use strict";

  var transport = window.wsechoTransport;
  var $ = function (id) { return document.getElementById(id); };
  var nameInput = $("name"), textInput = $("text"), logList = $("log"), memberList = $("members");
  var chatPath = "/chat";
  var socket = null;
  var myName = null;
  var members = [];

  // One line of the log: its time, then each [className, text] part.
  function log(millis, parts) {
    transport.logLine(logList, transport.clock(millis), parts);
  }

  var setStatus = transport.setStatus;

  function showMembers() {
    memberList.innerHTML = "";
    for (var i = 0; i < members.length; i++) {
      var item = document.createElement("li");
      if (members[i] === myName) { item.className = "me"; }
      // Its own direction: no name can reorder the list around it.
      item.dir = "auto";
      item.appendChild(document.createTextNode(members[i]));
      memberList.appendChild(item);
    }
    $("count").innerHTML = String(members.length);
  }

  // After an unexpected close the page joins again by itself (see transport.js).
  var retry = new transport.Retry();
  var rejoining = false;

  // `joined`: a connection is open or opening (the name is taken, Leave ends it). Saying is
  // enabled apart (`setInRoom`), only once the server's welcome says this page is a member:
  // before it, what others say does not reach this page yet (over the Flash bridge the join
  // takes a while), and what this page says would not be sent.
  function setJoined(joined) {
    nameInput.disabled = joined;
    $("join").disabled = joined;
    $("leave").disabled = !joined && !retry.waiting();
    if (!joined) { setInRoom(false); }
  }

  function setInRoom(inRoom) {
    textInput.disabled = !inRoom;
    $("say").disabled = !inRoom;
  }

  function send(object) {
    if (socket) { socket.send(JSON.stringify(object)); }
  }

  var handlers = {
    welcome: function (m) {
      myName = m.name;
      members = m.members;
      showMembers();
      setStatus("In the room as " + myName + ", via " + transport.name(socket) +
        (rejoining ? " (rejoined)." : "."), "open");
      rejoining = false;
      retry.succeeded();
      log(null, [["notice", "you joined as " + myName]]);
      setInRoom(true);
      textInput.focus();
    },
    joined: function (m) {
      members.push(m.name);
      showMembers();
      log(null, [["notice", m.name + " joined (" + m.count + " here)"]]);
    },
    left: function (m) {
      for (var i = 0; i < members.length; i++) {
        if (members[i] === m.name) { members.splice(i, 1); break; }
      }
      showMembers();
      log(null, [["notice", m.name + " left (" + m.count + " here)"]]);
    },
    said: function (m) {
      log(m.at, [["from", m.from + ":"], [m.from === myName ? "sent" : "received", m.text]]);
    },
    error: function (m) {
      log(null, [["error", "server: " + m.reason]]);
    }
  };

  function rejoinLater(name, why) {
    var delay = retry.later(function () { join(name); });
    setJoined(false);
    setStatus(why + " Rejoining in " + delay + " s (attempt " + retry.attempts +
      "); Leave stops trying.", "error");
  }

  // Join with the name typed, or (rejoining) with `again`.
  function join(again) {
    var retrying = typeof again === "string";
    var name = retrying ? again : nameInput.value.replace(/^\s+|\s+$/g, "");
    if (name === "") {
      setStatus("Pick a name first (1 to 32 characters).", "error");
      return;
    }
    var url = transport.urlFor(chatPath);
    if (url === "") {
      setStatus("The server's WebSocket port is unknown (config.json could not be read); reload the page.", "error");
      return;
    }
    try {
      socket = transport.open(url);
    } catch (e) {
      setStatus("Cannot connect to " + url + ": " + e.message, "error");
      return;
    }
    var opened = false;
    rejoining = retrying;
    setJoined(true);
    setStatus("Connecting to " + url + " via " + transport.name() + "…");
    socket.onopen = function () {
      opened = true;
      send({ type: "join", name: name });
    };
    socket.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      var handle = message && handlers[message.type];
      if (handle) { handle(message); }
    };
    socket.onclose = function (event) {
      socket = null;
      myName = null;
      members = [];
      showMembers();
      setJoined(false);
      var how = transport.describeClose(event);
      if (retrying && !opened) {
        rejoinLater(name, "Could not rejoin (" + how + ").");
      } else if (opened && retry.worthIt(event)) {
        log(null, [["error", "left the room: " + how]]);
        rejoinLater(name, "Left the room: " + how + ".");
      } else if (!opened) {
        setStatus("Could not connect to " + url + " (" + how + "). Is wsecho running?", "error");
      } else {
        setStatus("Left the room: " + how + ". Press Join to come back.", event.code === 1000 ? "" : "error");
      }
    };
  }

  function say() {
    var text = textInput.value;
    if (!socket || !myName || text === "") { return; }
    send({ type: "say", text: text });
    textInput.value = "";
    textInput.focus();
  }

  $("join-form").onsubmit = function () { retry.stop(); join(); return false; };
  $("say-form").onsubmit = function () { say(); return false; };
  $("leave").onclick = function () {
    if (retry.waiting()) {
      retry.stop();
      setJoined(false);
      setStatus("Stopped rejoining. Press Join to come back.");
      return;
    }
    if (socket) { socket.close(1000, "bye"); }
  };
  transport.start(function (config, note, configProblem) {
    if (config) { chatPath = config.chatPath; }
    if (configProblem) { setStatus(configProblem + ": reload the page, or check that wsecho serves it.", "error"); }
    $("flash-note").appendChild(document.createTextNode(note));
    nameInput.disabled = false;
    $("join").disabled = false; // the transport is settled: joining may begin
  });
})();
