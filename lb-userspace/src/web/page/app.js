// The status page: polls status.json and draws it. Plain JavaScript with no
// build step and no dependencies, so the file served is the file read.
// Everything from the agent goes into the page as text (textContent,
// setAttribute): backend names and reasons are operator input.
"use strict";

(function () {
  const POLL_MS = 2000;
  // A poll gives up before the next one is due, so a hung agent shows as
  // unreachable instead of as a page that silently stopped.
  const TIMEOUT_MS = 1800;
  const STATES = new Set(["up", "draining", "down"]);
  const VRRP_STATES = new Set(["MASTER", "BACKUP", "FAULT", "STOP", "INIT"]);

  // Counters of the previous successful poll, for rates.
  let previous = null;
  let lastOk = null;

  // An element with attributes and children; strings become text nodes.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined && v !== false) node.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function fmtInt(n) {
    return Number(n).toLocaleString("en-US");
  }

  function fmtBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let v = Number(n);
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }

  function fmtRate(v, unit) {
    if (v === null) return "–";
    const prefixes = ["", "k", "M", "G", "T"];
    let i = 0;
    while (v >= 1000 && i < prefixes.length - 1) {
      v /= 1000;
      i++;
    }
    return (v < 10 && i > 0 ? v.toFixed(2) : v.toFixed(v < 10 ? 1 : 0)) + " " + prefixes[i] + unit;
  }

  function fmtTime(ms) {
    const d = new Date(ms);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function fmtAgo(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  // Per second since the previous poll; none for the first poll or after
  // the counters went back (the agent restarted).
  function rate(key, field, value, now) {
    if (!previous || !previous.counters.has(key)) return null;
    const before = previous.counters.get(key)[field];
    const dt = (now - previous.at) / 1000;
    if (dt <= 0 || value < before) return null;
    return (value - before) / dt;
  }

  function backendKey(vip, b) {
    return vip.name + "|" + b.address + (b.sorry ? "|sorry" : "");
  }

  function table(key, head, rows) {
    return el(
      "div",
      { class: "scroll", "data-scroll": key },
      el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col" }, h)))), el("tbody", {}, rows)),
    );
  }

  function num(text) {
    return el("td", { class: "num" }, text);
  }

  function quorumBadge(v) {
    if (v.sorry_active) return el("span", { class: "badge bad", "data-quorum": "sorry" }, "quorum lost: sorry server serving");
    if (!v.quorum_up) return el("span", { class: "badge bad", "data-quorum": "lost" }, "quorum lost " + v.live_weight + "/" + v.quorum);
    return el("span", { class: "badge good", "data-quorum": "up" }, "quorum " + v.live_weight + "/" + v.quorum);
  }

  function drawVip(v, now) {
    const vipKey = v.name + "|";
    const rows = v.backends.map((b) => {
      const key = backendKey(v, b);
      const state = STATES.has(b.state) ? b.state : "unknown";
      return el(
        "tr",
        { class: "state-" + state, "data-backend": b.address, "data-state": state, "data-sorry": b.sorry ? "true" : null },
        el("th", { scope: "row" }, b.address, b.sorry ? el("span", { class: "tag" }, "sorry") : null),
        el("td", {}, el("span", { class: "state" }, b.state)),
        el("td", { class: "why" }, b.why),
        num(fmtInt(b.configured_weight)),
        num(fmtInt(b.effective_weight)),
        num(Number(b.share).toFixed(2) + " %"),
        num(fmtInt(b.packets)),
        num(fmtBytes(b.bytes)),
        num(fmtRate(rate(key, "packets", b.packets, now), "pkt/s")),
        num(fmtRate(scale(rate(key, "bytes", b.bytes, now), 8), "bit/s")),
        num(fmtInt(b.flows)),
        el("td", { class: "mono" }, b.mac || "–"),
      );
    });
    const up = v.backends.filter((b) => !b.sorry && b.state === "up").length;
    const all = v.backends.filter((b) => !b.sorry).length;
    return el(
      "article",
      { class: "vip", "data-vip": v.name },
      el(
        "header",
        {},
        el("h3", {}, v.name),
        quorumBadge(v),
        el("span", { class: "badge" }, up + "/" + all + " up"),
        el("span", { class: "meta" }, "on " + v.interface + " · hash " + v.hash + " · ring " + fmtInt(v.ring_size)),
      ),
      el(
        "p",
        { class: "totals" },
        fmtInt(v.packets) + " packets · " + fmtBytes(v.bytes) + " · ",
        fmtRate(rate(vipKey, "packets", v.packets, now), "pkt/s") + " · ",
        fmtRate(scale(rate(vipKey, "bytes", v.bytes, now), 8), "bit/s"),
      ),
      table(
        "vip:" + v.name,
        ["backend", "state", "why", "weight", "effective", "ring share", "packets", "bytes", "pkt/s", "bit/s", "flows", "MAC"],
        rows,
      ),
    );
  }

  function scale(v, by) {
    return v === null ? null : v * by;
  }

  function drawVrrp(list) {
    if (!list.length) return el("p", { class: "empty" }, "No VRRP instances configured.");
    const rows = list.map((i) => {
      const state = VRRP_STATES.has(i.state) ? i.state.toLowerCase() : "unknown";
      const rejected = (i.rejected || []).map(([k, n]) => k + " " + fmtInt(n)).join(", ");
      return el(
        "tr",
        { class: "vrrp-" + state, "data-instance": i.name, "data-state": i.state },
        el("th", { scope: "row" }, i.name),
        el("td", {}, el("span", { class: "state" }, i.state)),
        el("td", {}, i.interface),
        num(i.vrid),
        num(i.effective_priority === i.priority ? String(i.priority) : i.effective_priority + " (of " + i.priority + ")"),
        el("td", { class: "mono" }, i.master || "unknown"),
        el("td", { class: "why" }, (i.fault_reasons || []).join("; ") || "–"),
        el("td", {}, rejected || "–"),
        num(fmtInt(i.route_errors || 0)),
      );
    });
    return table(
      "vrrp",
      ["instance", "state", "interface", "VRID", "priority", "master", "fault", "adverts refused", "routes refused"],
      rows,
    );
  }

  function drawEvents(events, now) {
    if (!events.length) return el("p", { class: "empty" }, "No state changes since the agent started.");
    const rows = events
      .slice()
      .reverse()
      .map((e) =>
        el(
          "tr",
          { "data-kind": e.kind },
          el("td", { title: new Date(e.time_ms).toISOString() }, fmtTime(e.time_ms), el("br"), el("small", {}, fmtAgo(e.time_ms, now))),
          el("td", {}, e.kind),
          el("th", { scope: "row" }, e.subject),
          el("td", {}, e.from ? e.from + " → " + e.to : e.to),
          el("td", { class: "why" }, e.reason),
        ),
      );
    return table("events", ["time", "kind", "what", "change", "reason"], rows);
  }

  function drawCounters(counters, now) {
    const shown = counters.filter(([, n]) => n > 0);
    if (!shown.length) return el("p", { class: "empty" }, "No packets seen yet.");
    const rows = shown.map(([k, n]) =>
      el("tr", {}, el("th", { scope: "row" }, k), num(fmtInt(n)), num(fmtRate(rate("counter|" + k, "packets", n, now), "pkt/s"))),
    );
    return table("counters", ["counter", "packets", "rate"], rows);
  }

  function drawSummary(s) {
    const backends = s.vips.flatMap((v) => v.backends.filter((b) => !b.sorry));
    const down = backends.filter((b) => b.state !== "up").length;
    const attached = s.attached.length
      ? s.attached.map(([iface, mode]) => el("span", { class: "chip", "data-interface": iface }, iface + " (" + mode + ")"))
      : [el("span", { class: "chip bad" }, "not attached")];
    return [
      el("div", { class: "card" }, el("span", { class: "label" }, "fast path on"), el("span", {}, attached)),
      el("div", { class: "card" }, el("span", { class: "label" }, "VIPs"), el("span", { class: "value" }, s.vips.length)),
      el(
        "div",
        { class: "card" + (down ? " bad" : "") },
        el("span", { class: "label" }, "backends up"),
        el("span", { class: "value" }, backends.length - down + "/" + backends.length),
      ),
      el("div", { class: "card" }, el("span", { class: "label" }, "flows recorded"), el("span", { class: "value" }, fmtInt(s.flows))),
    ];
  }

  function counterSnapshot(s, now) {
    const counters = new Map();
    for (const v of s.vips) {
      counters.set(v.name + "|", { packets: v.packets, bytes: v.bytes });
      for (const b of v.backends) counters.set(backendKey(v, b), { packets: b.packets, bytes: b.bytes });
    }
    for (const [k, n] of s.counters) counters.set("counter|" + k, { packets: n });
    return { at: now, counters };
  }

  // Replaces a container's children, keeping where each table was
  // scrolled to: a phone user reading a wide table is not sent back left
  // every two seconds.
  function replace(container, ...nodes) {
    const scrolled = new Map();
    for (const s of document.querySelectorAll("[data-scroll]")) scrolled.set(s.getAttribute("data-scroll"), s.scrollLeft);
    container.replaceChildren(...nodes.flat());
    for (const s of container.querySelectorAll("[data-scroll]")) {
      const left = scrolled.get(s.getAttribute("data-scroll"));
      if (left) s.scrollLeft = left;
    }
  }

  function draw(s, now) {
    s.vrrp = s.vrrp || [];
    s.events = s.events || [];
    replace(document.getElementById("summary"), drawSummary(s));
    replace(
      document.getElementById("vips"),
      s.vips.length ? s.vips.map((v) => drawVip(v, now)) : [el("p", { class: "empty" }, "No VIPs configured.")],
    );
    replace(document.getElementById("vrrp"), drawVrrp(s.vrrp));
    replace(document.getElementById("events"), drawEvents(s.events, now));
    replace(document.getElementById("counters"), drawCounters(s.counters, now));
    const down = s.vips.flatMap((v) => v.backends).filter((b) => !b.sorry && b.state !== "up").length;
    document.title = down ? "lb status: " + down + " not up" : "lb status";
  }

  // `state`: ok, unreachable (no answer, or an HTTP error) or invalid (an
  // answer this page cannot draw, as from an agent of another version).
  function showPoll(state, detail) {
    const p = document.getElementById("poll");
    document.body.classList.toggle("unreachable", state !== "ok");
    p.setAttribute("data-state", state);
    const last = lastOk ? "last update " + fmtTime(lastOk) : "no update yet";
    if (state === "ok") p.textContent = "updated " + fmtTime(lastOk) + " · every " + POLL_MS / 1000 + " s";
    else if (state === "invalid") p.textContent = "status not understood (" + detail + ") · " + last;
    else p.textContent = "agent unreachable (" + detail + ") · " + last;
  }

  async function fetchStatus() {
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const response = await fetch("/status.json", { cache: "no-store", signal: abort.signal });
      if (!response.ok) throw new Error("HTTP " + response.status);
      return await response.json();
    } finally {
      clearTimeout(timeout);
    }
  }

  async function poll() {
    try {
      let status;
      try {
        status = await fetchStatus();
      } catch (e) {
        showPoll("unreachable", e.name === "AbortError" ? "no answer within " + TIMEOUT_MS / 1000 + " s" : e.message);
        return;
      }
      const now = Date.now();
      try {
        draw(status, now);
      } catch (e) {
        showPoll("invalid", e.message);
        return;
      }
      previous = counterSnapshot(status, now);
      lastOk = now;
      showPoll("ok");
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
