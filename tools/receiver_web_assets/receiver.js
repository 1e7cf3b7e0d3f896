// The test receiver's live page: adds each request the receiver gets to the page, from the
// Server-Sent Events at /stream, and shows times in the browser's zone (UTC on hover).
// The page is whole without this script; it only keeps it current. Text goes in as text
// (textContent), never as markup.
"use strict";

(function () {
  const KEPT = 200;
  const list = document.getElementById("entries");
  const state = document.getElementById("live-state");

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function localTime(node) {
    const when = new Date(node.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    node.title = when.toISOString().replace("T", " ").replace("Z", " UTC");
    node.textContent = when.toLocaleString(undefined, {
      year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
    });
  }

  function head(e) {
    const div = el("div", "head");
    div.append(el("span", "n", "#" + e.n));
    const time = el("time", null, e.shown_time);
    time.setAttribute("datetime", e.time);
    localTime(time);
    div.append(time, el("span", "status", e.method + " " + e.path + ": " + e.status));
    const wid = el("span", "wid", "webhook-id ");
    wid.append(el("code", null, e.webhook_id || "-"));
    div.append(wid);
    for (const [label, value] of [["auth", e.auth], ["signature", e.signature]]) {
      div.append(el("span", value.startsWith("failed") ? "check bad" : "check", label + ": " + value));
    }
    return div;
  }

  function eventsTable(events) {
    const table = el("table", "events");
    const row = el("tr");
    for (const [label, cls] of [["seq", "num"], ["event"], ["about"], ["flags"]]) row.append(el("th", cls, label));
    const thead = el("thead");
    thead.append(row);
    const tbody = el("tbody");
    for (const ev of events) {
      const tr = el("tr");
      const flags = el("td");
      for (const f of ev.flags) flags.append(el("span", f.startsWith("bulk") ? "flag info" : "flag", f), " ");
      tr.append(el("td", "num", ev.seq), el("td", "event", ev.event), el("td", null, ev.about), flags);
      tbody.append(tr);
    }
    table.append(thead, tbody);
    return table;
  }

  function entryNode(e) {
    const li = el("li", "entry " + (e.status >= 200 && e.status < 300 ? "ok" : "refused"));
    li.id = "request-" + e.n;
    li.append(head(e));
    if (e.problem) li.append(el("p", "problem", e.problem));
    if (e.events.length) li.append(eventsTable(e.events));
    li.append(el("pre", "body", e.body));
    return li;
  }

  function showChecks(summary, problems) {
    for (const figure of document.querySelectorAll("#summary .figure")) {
      const key = figure.dataset.key;
      if (!(key in summary)) continue;
      figure.querySelector("dd").textContent = String(summary[key]);
      figure.classList.toggle("bad", key !== "events" && key !== "requests" && summary[key] > 0);
    }
    const ul = document.getElementById("problems");
    ul.replaceChildren(...problems.map((p) => el("li", null, p)));
  }

  function received(message) {
    const m = JSON.parse(message.data);
    if (document.getElementById("request-" + m.entry.n)) return;
    list.prepend(entryNode(m.entry));
    while (list.children.length > KEPT) list.lastElementChild.remove();
    document.getElementById("empty").hidden = true;
    if (m.summary) showChecks(m.summary, m.problems);  // sent with the last message of a batch
  }

  document.querySelectorAll("#entries time[datetime]").forEach(localTime);
  if (!window.EventSource) return;
  const source = new EventSource("/stream?after=" + encodeURIComponent(document.body.dataset.after || "0"));
  source.onopen = function () {
    state.textContent = "Live: new requests appear at the top.";
    state.className = "live";
  };
  source.onerror = function () {
    state.textContent = "Not connected to the receiver (it retries by itself).";
    state.className = "down";
  };
  source.onmessage = received;
})();
