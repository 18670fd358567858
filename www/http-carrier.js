// A session over HTTP, for networks that break the WebSocket upgrade (a proxy that strips
// Upgrade, or refuses it): an object with the WebSocket API (onopen, onmessage, onerror,
// onclose, send, close, readyState), carried by requests to the page's own server, which
// pass wherever the page itself passed. transport.js uses it when a WebSocket cannot open.
//
// The server's records (see src/session/records.rs) come down one long response (HTTP
// streaming) or, where a proxy holds responses back until they end, one response per batch
// (HTTP long-polling): the first stream's first record is a keepalive, and a stream that does
// not show it within STREAM_PROBE_MS means a buffering proxy, so the session polls instead.
// The page's messages go up in POSTs, numbered, one POST at a time; a failed request is
// tried again with the same numbers, and the server takes each message once. When the network
// drops, the session is kept by the server for its resume window and the page comes back for
// exactly what it missed; past the window, the session ends with 1006 saying so.
// Modern browsers only (fetch with streams): older ones have the Flash bridge.
(function () {
  "use strict";

  var STREAM_PROBE_MS = 3000;
  var RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000];
  var encoder = window.TextEncoder ? new TextEncoder() : null;
  var decoder = window.TextDecoder ? new TextDecoder() : null;

  function available() {
    return !!(window.fetch && encoder && decoder && window.ReadableStream && window.AbortController);
  }

  // Records as bytes: KIND SEQ " " LEN "\n" PAYLOAD.
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
      var seq = parseInt(head.substring(1, space), 10), length = parseInt(head.substring(space + 1), 10);
      if (newline + 1 + length > bytes.length) { break; }
      records.push({ kind: head.charAt(0), seq: seq, payload: bytes.slice(newline + 1, newline + 1 + length) });
      at = newline + 1 + length;
    }
    return { records: records, rest: bytes.slice(at) };
  }

  function HttpSocket(path, binaryType) {
    this.readyState = 0; // CONNECTING
    this.carrier = "HTTP streaming";
    this.extensions = "";
    this.binaryType = binaryType || "blob";
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    this.id = null;
    this.window = 30;
    this.nextDown = 1;       // the next record wanted from the server
    this.nextUp = 1;         // the number of the next message the page sends
    this.unconfirmed = [];   // records posted, or to post, not yet confirmed (204)
    this.posting = false;
    this.mode = "stream";
    this.failures = 0;
    this.lastHeard = 0;
    this.ended = false;
    this.abort = null;
    this.open(path);
  }

  HttpSocket.prototype.fire = function (name, event) {
    if (typeof this[name] === "function") { this[name](event); }
  };

  HttpSocket.prototype.end = function (code, reason) {
    if (this.ended) { return; }
    this.ended = true;
    this.readyState = 3; // CLOSED
    if (this.abort) { this.abort.abort(); }
    this.fire("onclose", { code: code, reason: reason, wasClean: code !== 1006 });
  };

  HttpSocket.prototype.fail = function (reason) {
    this.fire("onerror", { type: "error", message: reason });
    this.end(1006, reason);
  };

  HttpSocket.prototype.open = function (path) {
    var self = this;
    fetch("session/open" + path, { method: "POST", cache: "no-store" }).then(function (response) {
      if (response.status !== 200) {
        return response.text().then(function (text) {
          self.fail("HTTP " + response.status + ": " + text.replace(/\s+$/, ""));
        });
      }
      return response.json().then(function (opened) {
        self.id = opened.session;
        self.window = opened.window;
        self.down(false);
      });
    }, function () {
      self.fail("the server could not be reached");
    });
  };

  // The session is open once the first down request shows how the network carries it.
  HttpSocket.prototype.opened = function () {
    if (this.readyState !== 0) { return; }
    this.readyState = 1; // OPEN
    this.carrier = this.mode === "stream" ? "HTTP streaming" : "HTTP long-polling";
    this.fire("onopen", { type: "open" });
    this.post();
  };

  // Ask for the records after the last one received; `resumed`: after a failure.
  HttpSocket.prototype.down = function (resumed) {
    if (this.ended) { return; }
    var self = this;
    var controller = new AbortController();
    self.abort = controller;
    var url = "session/" + self.id + "/down?from=" + self.nextDown + "&mode=" + self.mode +
      (resumed ? "&resumed=1" : "");
    var probe = null;
    if (self.mode === "stream" && self.readyState === 0) {
      // A proxy that buffers holds the first keepalive back: poll instead.
      probe = setTimeout(function () {
        probe = null;
        self.mode = "poll";
        controller.abort();
        self.opened();
        self.down(false);
      }, STREAM_PROBE_MS);
    }
    var pending = new Uint8Array(0);
    var take = function (bytes) {
      var parsed = parse(concat([pending, bytes]));
      pending = parsed.rest;
      if (parsed.records.length > 0 && probe) { clearTimeout(probe); probe = null; }
      self.opened();
      self.failures = 0;
      for (var i = 0; i < parsed.records.length && !self.ended; i++) { self.deliver(parsed.records[i]); }
    };
    var next = function () {
      if (self.ended || controller !== self.abort) { return; }
      self.down(false);
    };
    var failed = function (why) {
      if (self.ended || controller !== self.abort) { return; } // ended, or replaced by the probe
      if (probe) { clearTimeout(probe); probe = null; }
      self.retry(why, function () { self.down(true); });
    };
    fetch(url, { cache: "no-store", signal: controller.signal }).then(function (response) {
      if (response.status !== 200) {
        return response.text().then(function (text) { self.gone(response.status, text); });
      }
      if (self.mode === "poll") {
        return response.arrayBuffer().then(function (body) { take(new Uint8Array(body)); next(); });
      }
      var reader = response.body.getReader();
      var pump = function () {
        return reader.read().then(function (chunk) {
          if (chunk.done) { return next(); }
          take(chunk.value);
          return pump();
        });
      };
      return pump();
    }).then(null, function (error) { failed(error && error.message); });
  };

  // The server no longer knows the session (it ended, or the page was away too long).
  HttpSocket.prototype.gone = function (status, text) {
    if (status === 404 || status === 410) {
      return this.end(1006, "the session ended while the connection was away (past the server's " +
        this.window + " s resume window): messages may have been missed");
    }
    this.fail("HTTP " + status + ": " + text.replace(/\s+$/, ""));
  };

  // Try `again` after a growing delay, for as long as the server keeps the session.
  HttpSocket.prototype.retry = function (why, again) {
    var self = this;
    if (!self.lastFailure || self.failures === 0) { self.lastFailure = Date.now(); }
    if (Date.now() - self.lastFailure > self.window * 1000) {
      return self.end(1006, "the connection stayed down longer than the server's " + self.window +
        " s resume window: messages may have been missed (" + why + ")");
    }
    var delay = RETRY_DELAYS_MS[Math.min(self.failures, RETRY_DELAYS_MS.length - 1)];
    self.failures += 1;
    setTimeout(function () { if (!self.ended) { again(); } }, delay);
  };

  HttpSocket.prototype.deliver = function (record) {
    if (record.kind === "k") { return; }
    if (record.seq < this.nextDown) { return; } // had it already
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

  HttpSocket.prototype.send = function (data) {
    if (this.readyState !== 1) { throw new Error("the session is not open"); }
    var kind = typeof data === "string" ? "t" : "b";
    var payload = typeof data === "string" ? encoder.encode(data) : new Uint8Array(data.buffer || data);
    this.unconfirmed.push(record(kind, this.nextUp, payload));
    this.nextUp += 1;
    this.post();
  };

  HttpSocket.prototype.close = function (code, reason) {
    if (this.readyState > 1) { return; }
    this.readyState = 2; // CLOSING: the server's close record ends it
    var text = String(code || 1000) + " " + (reason || "");
    this.unconfirmed.push(record("c", this.nextUp, encoder.encode(text)));
    this.nextUp += 1;
    this.post();
  };

  // Post what is unconfirmed, one POST at a time; a failed POST is sent again, whole.
  HttpSocket.prototype.post = function () {
    var self = this;
    if (self.posting || self.unconfirmed.length === 0 || self.ended || self.readyState === 0) { return; }
    self.posting = true;
    var sending = self.unconfirmed.length;
    fetch("session/" + self.id + "/up", { method: "POST", body: concat(self.unconfirmed.slice(0, sending)), cache: "no-store" })
      .then(function (response) {
        self.posting = false;
        if (response.status === 204) {
          self.failures = 0;
          self.unconfirmed.splice(0, sending);
          return self.post();
        }
        return response.text().then(function (text) { self.gone(response.status, text); });
      }, function (error) {
        self.posting = false;
        self.retry(error && error.message, function () { self.post(); });
      });
  };

  window.wsechoHttpCarrier = { available: available, HttpSocket: HttpSocket, parse: parse };
})();
