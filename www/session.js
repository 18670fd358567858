// A session with the page's own server: an object with the WebSocket API (onopen, onmessage,
// onerror, onclose, send, close, readyState, binaryType) that outlives its carrier.
// transport.js hands one out for every WebSocket on the page's own host.
//
// The carrier is a native WebSocket offering the subprotocol wsecho.session, or, where the
// network breaks the upgrade (an error or close before it opens, or no open within
// UPGRADE_PATIENCE_MS: a proxy that strips Upgrade, or refuses it), HTTP on the page's own
// server: one long response (HTTP streaming) or, where a proxy holds responses back until
// they end, one response per batch (HTTP long-polling; a stream whose first keepalive does
// not come within STREAM_PROBE_MS means such a proxy). Both move the same numbered records
// (src/session/records.rs), so that when the carrier drops without a close, the page comes
// back (over whatever carrier works) within the server's resume window for exactly what it
// missed, and sends again what the server did not get; the handler on the server notices
// nothing. Past the window the session ends with 1006, saying messages may have been missed.
// Modern browsers only (fetch with streams): older ones have the Flash bridge.
(function () {
  "use strict";

  var PROTOCOL = "wsecho.session";
  var UPGRADE_PATIENCE_MS = 4000;
  var STREAM_PROBE_MS = 3000;
  var RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000];
  var ACK_EVERY = 32;        // records between acknowledgements over a WebSocket
  var ACK_AFTER_MS = 1000;   // and at the latest after this long
  var encoder = window.TextEncoder ? new TextEncoder() : null;
  var decoder = window.TextDecoder ? new TextDecoder() : null;
  // Set once HTTP worked where a WebSocket did not: later sessions go straight to HTTP.
  var upgradeBroken = false;

  function available() {
    return !!(window.WebSocket && window.fetch && encoder && decoder && window.ReadableStream &&
      window.AbortController);
  }

  // A record as bytes: KIND SEQ " " LEN "\n" PAYLOAD.
  function record(kind, seq, payload) {
    var head = encoder.encode(kind + seq + " " + payload.length + "\n");
    var out = new Uint8Array(head.length + payload.length);
    out.set(head, 0);
    out.set(payload, head.length);
    return out;
  }

  function concat(parts) {
    var length = 0, i;
    for (i = 0; i < parts.length; i++) { length += parts[i].length; }
    var out = new Uint8Array(length), at = 0;
    for (i = 0; i < parts.length; i++) { out.set(parts[i], at); at += parts[i].length; }
    return out;
  }

  // The whole records at the start of `bytes`, and the bytes of an unfinished one after them.
  function parse(bytes) {
    var records = [], at = 0;
    for (;;) {
      var newline = -1;
      for (var i = at; i < bytes.length && i < at + 44; i++) {
        if (bytes[i] === 10) { newline = i; break; }
      }
      if (newline < 0) { break; }
      var head = decoder.decode(bytes.subarray(at, newline));
      var space = head.indexOf(" ");
      var length = parseInt(head.substring(space + 1), 10);
      if (newline + 1 + length > bytes.length) { break; }
      records.push({ kind: head.charAt(0), seq: parseInt(head.substring(1, space), 10),
        payload: bytes.slice(newline + 1, newline + 1 + length) });
      at = newline + 1 + length;
    }
    return { records: records, rest: bytes.slice(at) };
  }

  function Session(url) {
    this.url = url;
    this.path = url.replace(/^wss?:\/\/[^\/]*/, "") || "/";
    this.readyState = 0; // CONNECTING
    this.carrier = "native WebSocket";
    this.extensions = "";
    this.binaryType = "blob";
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    this.id = null;
    this.window = 30;
    this.nextDown = 1;     // the number of the next record wanted from the server
    this.nextUp = 1;       // the number of the next record the page sends
    this.unconfirmed = []; // records sent that the server has not confirmed: {seq, bytes}
    this.link = null;      // the carrier in use
    this.failures = 0;
    this.downSince = 0;
    this.ended = false;
    this.connect(false);
  }

  Session.prototype.fire = function (name, event) {
    if (typeof this[name] === "function") { this[name](event); }
  };

  Session.prototype.connect = function (resumed) {
    if (this.ended) { return; }
    if (upgradeBroken) { return new HttpLink(this, resumed, false); }
    new WsLink(this, resumed);
  };

  // A carrier is up: what the server has not confirmed goes again (it keeps each record once).
  Session.prototype.attached = function (link) {
    if (this.link && this.link !== link) { this.link.stop(); }
    this.link = link;
    this.failures = 0;
    this.carrier = link.name;
    for (var i = 0; i < this.unconfirmed.length; i++) { link.send(this.unconfirmed[i]); }
    if (this.readyState === 0) {
      this.readyState = 1; // OPEN
      this.fire("onopen", { type: "open" });
    }
  };

  // The carrier dropped without a close: come back within the window.
  Session.prototype.dropped = function (link, why) {
    if (this.ended || (this.link && this.link !== link)) { return; }
    this.link = null;
    var self = this;
    if (self.failures === 0) { self.downSince = Date.now(); }
    if (Date.now() - self.downSince > self.window * 1000) {
      return self.end(1006, "the connection stayed down longer than the server's " + self.window +
        " s resume window: messages may have been missed (" + why + ")");
    }
    var delay = RETRY_DELAYS_MS[Math.min(self.failures, RETRY_DELAYS_MS.length - 1)];
    self.failures += 1;
    setTimeout(function () { self.connect(true); }, delay);
  };

  // The server no longer knows the session: it ended, or the page was away too long.
  Session.prototype.gone = function () {
    this.end(1006, "the session ended while the connection was away (past the server's " +
      this.window + " s resume window): messages may have been missed");
  };

  Session.prototype.fail = function (reason) {
    this.fire("onerror", { type: "error", message: reason });
    this.end(1006, reason);
  };

  Session.prototype.end = function (code, reason) {
    if (this.ended) { return; }
    this.ended = true;
    this.readyState = 3; // CLOSED
    if (this.link) { this.link.stop(); }
    this.fire("onclose", { code: code, reason: reason, wasClean: code !== 1006 });
  };

  Session.prototype.confirmed = function (upTo) {
    while (this.unconfirmed.length > 0 && this.unconfirmed[0].seq <= upTo) { this.unconfirmed.shift(); }
  };

  Session.prototype.deliver = function (record) {
    if (record.kind === "k" || record.seq < this.nextDown) { return; } // keepalive, or had it
    this.nextDown = record.seq + 1;
    if (record.kind === "t") {
      this.fire("onmessage", { data: decoder.decode(record.payload) });
    } else if (record.kind === "b") {
      var data = this.binaryType === "arraybuffer" ? record.payload.buffer : new Blob([record.payload]);
      this.fire("onmessage", { data: data });
    } else if (record.kind === "c") {
      var text = decoder.decode(record.payload), space = text.indexOf(" ");
      this.end(parseInt(text.substring(0, space), 10) || 1005, text.substring(space + 1));
    }
  };

  Session.prototype.queue = function (kind, payload) {
    var entry = { seq: this.nextUp, bytes: record(kind, this.nextUp, payload) };
    this.nextUp += 1;
    this.unconfirmed.push(entry);
    if (this.link) { this.link.send(entry); }
  };

  Session.prototype.send = function (data) {
    if (this.readyState !== 1) { throw new Error("the connection is not open"); }
    if (typeof data === "string") { return this.queue("t", encoder.encode(data)); }
    this.queue("b", new Uint8Array(data.buffer || data));
  };

  Session.prototype.close = function (code, reason) {
    if (this.readyState === 0) { return this.end(1006, "closed before it opened"); }
    if (this.readyState > 1) { return; }
    this.readyState = 2; // CLOSING: the server's close record ends it
    this.queue("c", encoder.encode(String(code || 1000) + " " + (reason || "")));
  };

  // A native WebSocket carrying the session.
  function WsLink(session, resumed) {
    var self = this;
    self.name = "native WebSocket";
    self.session = session;
    self.unacked = 0;
    var socket = self.socket = new window.WebSocket(session.url, [PROTOCOL]);
    socket.binaryType = "arraybuffer";
    var opened = false, greeted = false;
    var giveUp = function () {
      socket.onopen = socket.onmessage = socket.onerror = socket.onclose = null;
      try { socket.close(); } catch (e) { /* not open */ }
      new HttpLink(session, resumed, true);
    };
    var patience = setTimeout(giveUp, UPGRADE_PATIENCE_MS);
    socket.onopen = function () {
      opened = true;
      clearTimeout(patience);
      session.extensions = socket.extensions || "";
      socket.send(session.id ? "resume " + session.id + " " + session.nextDown : "open");
    };
    socket.onmessage = function (event) {
      if (typeof event.data === "string") {
        if (!greeted) {
          greeted = true;
          var hello = JSON.parse(event.data);
          session.id = hello.session;
          session.window = hello.window;
          session.confirmed(hello.received);
          self.timer = setInterval(function () { self.ack(); }, ACK_AFTER_MS);
          return session.attached(self);
        }
        var received = /^received (\d+)$/.exec(event.data);
        if (received) { session.confirmed(parseInt(received[1], 10)); }
        return;
      }
      var records = parse(new Uint8Array(event.data)).records;
      for (var i = 0; i < records.length; i++) { session.deliver(records[i]); }
      self.unacked += records.length;
      if (self.unacked >= ACK_EVERY) { self.ack(); }
    };
    socket.onclose = function (event) {
      clearTimeout(patience);
      clearInterval(self.timer);
      if (!opened) { return giveUp(); } // the upgrade failed: HTTP
      if (!greeted && event.code === 4404) { return session.gone(); }
      if (!greeted && event.code >= 4000) { return session.fail(event.reason || "code " + event.code); }
      if (event.code === 1006 || !greeted) { return session.dropped(self, "code " + event.code); }
      session.end(event.code, event.reason); // the server closed it: so ends the session
    };
  }

  WsLink.prototype.send = function (entry) { this.socket.send(entry.bytes); };

  // Say which records the page has; the server answers with what it has of the page's.
  WsLink.prototype.ack = function () {
    if (this.unacked === 0 && this.session.unconfirmed.length === 0) { return; }
    this.unacked = 0;
    try { this.socket.send("ack " + this.session.nextDown); } catch (e) { /* closing */ }
  };

  WsLink.prototype.stop = function () {
    clearInterval(this.timer);
    this.socket.onclose = this.socket.onmessage = null;
    try { this.socket.close(1000); } catch (e) { /* closed */ }
  };

  // HTTP on the page's own server carrying the session; `afterUpgradeFailed`: a WebSocket
  // could not open, so once this works, later sessions come straight here.
  function HttpLink(session, resumed, afterUpgradeFailed) {
    this.session = session;
    this.name = "HTTP streaming";
    this.mode = "stream";
    this.stopped = false;
    this.posting = false;
    this.controller = null;
    this.afterUpgradeFailed = afterUpgradeFailed;
    var self = this;
    if (session.id) { return self.down(resumed); }
    fetch("session/open" + session.path, { method: "POST", cache: "no-store" }).then(function (response) {
      if (response.status !== 200) {
        return response.text().then(function (text) {
          session.fail("HTTP " + response.status + ": " + text.replace(/\s+$/, ""));
        });
      }
      return response.json().then(function (opened) {
        session.id = opened.session;
        session.window = opened.window;
        self.down(false);
      });
    }, function () {
      session.fail("the server could not be reached");
    });
  }

  // The carrier is known to work (records flow, or polling was chosen).
  HttpLink.prototype.up = function () {
    if (this.stopped || this.session.link === this) { return; }
    if (this.afterUpgradeFailed) { upgradeBroken = true; }
    this.name = this.mode === "stream" ? "HTTP streaming" : "HTTP long-polling";
    this.session.attached(this);
  };

  // Ask for the records after the last one received; `resumed`: after a failure.
  HttpLink.prototype.down = function (resumed) {
    if (this.stopped) { return; }
    var self = this, session = self.session;
    var controller = self.controller = new AbortController();
    var probe = null;
    if (self.mode === "stream" && session.link !== self) {
      // A proxy that buffers holds the first keepalive back: poll instead.
      probe = setTimeout(function () {
        probe = null;
        self.mode = "poll";
        controller.abort();
        self.up();
        self.down(false);
      }, STREAM_PROBE_MS);
    }
    var pending = new Uint8Array(0);
    var take = function (bytes) {
      var parsed = parse(concat([pending, bytes]));
      pending = parsed.rest;
      if (parsed.records.length > 0 && probe) { clearTimeout(probe); probe = null; }
      if (parsed.records.length > 0) { self.up(); }
      for (var i = 0; i < parsed.records.length && !session.ended; i++) { session.deliver(parsed.records[i]); }
    };
    var current = function () { return !self.stopped && !session.ended && controller === self.controller; };
    var url = "session/" + session.id + "/down?from=" + session.nextDown + "&mode=" + self.mode +
      (resumed ? "&resumed=1" : "");
    fetch(url, { cache: "no-store", signal: controller.signal }).then(function (response) {
      if (response.status !== 200) {
        return response.text().then(function () { if (current()) { session.gone(); } });
      }
      if (self.mode === "poll") {
        return response.arrayBuffer().then(function (body) {
          take(new Uint8Array(body));
          if (current()) { self.down(false); }
        });
      }
      var reader = response.body.getReader();
      var pump = function () {
        return reader.read().then(function (chunk) {
          if (chunk.done) { return current() && self.down(false); }
          take(chunk.value);
          return pump();
        });
      };
      return pump();
    }).then(null, function (error) {
      if (probe) { clearTimeout(probe); probe = null; }
      if (current()) {
        self.stop();
        session.dropped(self, (error && error.message) || "request failed");
      }
    });
  };

  HttpLink.prototype.send = function () { this.post(); };

  // Post what is unconfirmed, one POST at a time; a failed POST goes again, whole.
  HttpLink.prototype.post = function () {
    var self = this, session = self.session;
    if (self.posting || self.stopped || session.unconfirmed.length === 0) { return; }
    self.posting = true;
    var sending = session.unconfirmed.slice(0);
    var body = concat(sending.map(function (entry) { return entry.bytes; }));
    fetch("session/" + session.id + "/up", { method: "POST", body: body, cache: "no-store" }).then(function (response) {
      self.posting = false;
      if (response.status === 204) {
        session.confirmed(sending[sending.length - 1].seq);
        return self.post();
      }
      if (!self.stopped) { session.gone(); }
    }, function (error) {
      self.posting = false;
      if (!self.stopped) {
        self.stop();
        session.dropped(self, (error && error.message) || "request failed");
      }
    });
  };

  HttpLink.prototype.stop = function () {
    this.stopped = true;
    if (this.controller) { this.controller.abort(); }
  };

  window.wsechoSession = { available: available, Session: Session };
})();
