// eventsink-agent console: live updates for pages that already show their data without it.
// Times in the browser's zone (UTC on hover); figures refreshed from /api/*; Live follows
// /live/stream (Server-Sent Events). Text only through textContent: nothing a sink or a
// receiver sends can become markup.
"use strict";

(function () {
  var POLL_MS = 2000;
  var LIVE_ROWS = 200;

  function utcText(iso) {
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, "") + " UTC";
  }

  function localText(iso) {
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit"
    });
  }

  function timeElement(iso) {
    if (!iso) { return document.createTextNode("-"); }
    var t = document.createElement("time");
    t.dateTime = iso;
    localize(t);
    return t;
  }

  function localize(t) {
    var iso = t.getAttribute("datetime");
    t.textContent = localText(iso);
    t.title = utcText(iso);
  }

  function seconds(v) {
    if (typeof v !== "number") { return "-"; }
    if (!v) { return "0"; }
    return v < 1 ? Number((v * 1000).toPrecision(3)) + " ms" : Number(v.toPrecision(3)) + " s";
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }

  function setCell(cell, node) {
    cell.replaceChildren(node);
  }

  function stateBadge(state) { return el("span", state, "state state-" + state); }

  function alarmList(alarms) {
    var f = document.createDocumentFragment();
    (alarms || []).forEach(function (a) { f.appendChild(el("span", a, "alarm")); f.appendChild(document.createTextNode(" ")); });
    return f;
  }

  function updateFigures(row, s) {
    row.querySelectorAll("[data-field]").forEach(function (cell) {
      var field = cell.getAttribute("data-field");
      var before = cell.textContent;
      if (field === "state") { setCell(cell, stateBadge(s.state)); }
      else if (field === "alarms") { setCell(cell, alarmList(s.alarms)); }
      else if (field === "last_attempted_restart") { setCell(cell, timeElement(s.last_attempted_restart)); }
      else if (field === "current_backoff") { cell.textContent = seconds(s.current_backoff); }
      else if (field in s) { cell.textContent = String(s[field]); }
      if (cell.textContent !== before) { cell.classList.remove("fresh"); void cell.offsetWidth; cell.classList.add("fresh"); }
    });
  }

  function poll(url, apply) {
    var busy = false;
    function once() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (r.status === 403) { location.reload(); } return r.ok ? r.json() : null; })
        .then(function (body) { if (body) { apply(body); } })
        .catch(function () {})
        .then(function () { busy = false; });
    }
    setInterval(once, POLL_MS);
  }

  function sinksPage() {
    poll("/api/status", function (status) {
      (status.sinks || []).forEach(function (s) {
        document.querySelectorAll("tr[data-sink]").forEach(function (row) {
          if (row.getAttribute("data-sink") === s.name) { updateFigures(row, s); }
        });
      });
      var received = document.querySelector("[data-bus=received]");
      if (received && status.bus) { received.textContent = String(status.bus.received); }
    });
  }

  function sinkPage() {
    var table = document.getElementById("figures");
    if (!table) { return; }
    var name = table.getAttribute("data-sink");
    poll("/api/status", function (status) {
      (status.sinks || []).forEach(function (s) { if (s.name === name) { updateFigures(table, s); } });
    });
  }

  function alarmsPage() {
    var table = document.getElementById("alarms");
    var none = document.getElementById("no-alarms");
    poll("/api/alarms", function (alarms) {
      var body = table.tBodies[0];
      body.replaceChildren();
      alarms.forEach(function (a) {
        var tr = el("tr");
        var name = el("td"); name.appendChild(el("span", a.name, "alarm")); tr.appendChild(name);
        tr.appendChild(el("td", a.sink || "(node)"));
        var at = el("td"); at.appendChild(timeElement(a.raised_at)); tr.appendChild(at);
        tr.appendChild(el("td", a.detail));
        body.appendChild(tr);
      });
      table.hidden = alarms.length === 0;
      none.hidden = alarms.length !== 0;
    });
  }

  function deliveryRows(d) {
    var doc = null;
    try { doc = JSON.parse(d.body); } catch (e) { doc = null; }
    var tbody = el("tbody", null, "delivery fresh");
    var tr = el("tr");
    var at = el("td"); at.appendChild(timeElement(d.at)); tr.appendChild(at);
    tr.appendChild(el("td", d.sink));
    tr.appendChild(el("td", d.seq, "num"));
    tr.appendChild(el("td", doc && doc.event ? doc.event : ""));
    tr.appendChild(el("td", d.webhook_id, "mono"));
    var st = el("td", null, "num");
    st.appendChild(el("span", d.status !== null && d.status !== undefined ? d.status : d.outcome,
      "outcome outcome-" + (d.outcome === "success" ? "ok" : "bad")));
    tr.appendChild(st);
    tr.appendChild(el("td", seconds(d.duration), "num"));
    tbody.appendChild(tr);
    var bodyRow = el("tr", null, "body");
    var cell = el("td"); cell.colSpan = 7;
    cell.appendChild(el("pre", doc !== null ? JSON.stringify(doc, null, 2) : (d.body || "")));
    bodyRow.appendChild(cell);
    tbody.appendChild(bodyRow);
    return tbody;
  }

  function livePage() {
    var table = document.getElementById("live");
    var status = document.getElementById("live-status");
    var sink = table.getAttribute("data-sink");
    var source = new EventSource("/live/stream" + (sink ? "?sink=" + encodeURIComponent(sink) : ""));
    source.addEventListener("open", function () { status.textContent = "Following: the POSTs as they are sent, newest first."; });
    source.addEventListener("delivery", function (e) {
      var d = JSON.parse(e.data);
      table.insertBefore(deliveryRows(d), table.tBodies[0] || null);
      while (table.tBodies.length > LIVE_ROWS) { table.removeChild(table.tBodies[table.tBodies.length - 1]); }
    });
    source.addEventListener("status", function (e) { status.textContent = JSON.parse(e.data).message; });
    source.addEventListener("error", function () { status.textContent = "Reconnecting to the live feed..."; });
    var select = document.getElementById("sink");
    if (select) { select.addEventListener("change", function () { select.form.submit(); }); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("time[datetime]").forEach(localize);
    var page = document.body.getAttribute("data-page");
    if (page === "sinks") { sinksPage(); }
    else if (page === "sink") { sinkPage(); }
    else if (page === "alarms") { alarmsPage(); }
    else if (page === "live") { livePage(); }
  });
}());
