// The receiver's live inspector: polls the JSON feed and renders what arrives.
// Event fields are attacker-controlled strings, so every value goes through
// textContent (or canvas fillText); nothing from an event ever reaches innerHTML.
"use strict";

(() => {
  const POLL_MS = 500;
  const MAX_EVENTS = 2000;
  const CHART_SECONDS = 60;
  const OUTCOMES = ["accepted", "dropped", "rejected"];
  const PALETTE = [
    "#5850ec", "#0ea5a4", "#f59e0b", "#e11d48", "#16a34a", "#8b5cf6",
    "#0284c7", "#db2777", "#65a30d", "#ea580c", "#475569", "#0891b2",
  ];

  const byId = (id) => document.getElementById(id);
  const tbody = document.querySelector("#events tbody");
  const filters = {
    name: byId("filter-name"),
    outcome: byId("filter-outcome"),
    kind: byId("filter-kind"),
  };
  const state = {
    lastId: 0,
    events: [], // oldest first, at most MAX_EVENTS
    rows: new Map(), // event id -> <tr>
    offsetMs: 0, // server clock minus browser clock
    colors: new Map(),
    names: new Set(),
    legendKey: "",
  };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function pad(number, width) {
    return String(number).padStart(width, "0");
  }

  function formatTime(seconds) {
    const date = new Date(seconds * 1000);
    return `${pad(date.getHours(), 2)}:${pad(date.getMinutes(), 2)}:${pad(date.getSeconds(), 2)}` +
      `.${pad(date.getMilliseconds(), 3)}`;
  }

  function colorFor(name) {
    if (!state.colors.has(name)) {
      const index = state.colors.size;
      const color = index < PALETTE.length
        ? PALETTE[index]
        : `hsl(${(index * 47) % 360} 60% 50%)`;
      state.colors.set(name, color);
    }
    return state.colors.get(name);
  }

  function matches(event) {
    const name = filters.name.value.trim().toLowerCase();
    const outcome = filters.outcome.value;
    const kind = filters.kind.value;
    if (name && !event.name.toLowerCase().includes(name)) return false;
    if (outcome && event.outcome !== outcome) return false;
    if (kind === "human") return event.agent_kind === null;
    if (kind === "bot") return event.agent_kind !== null;
    if (kind) return event.agent_kind === kind;
    return true;
  }

  // -- table ---------------------------------------------------------------------------

  function cell(row, className, ...children) {
    const td = el("td", className);
    for (const child of children) td.append(child);
    row.append(td);
    return td;
  }

  function buildRow(event) {
    const row = el("tr");
    row.dataset.id = String(event.id);
    row.dataset.outcome = event.outcome;
    row.dataset.kind = event.agent_kind === null ? "human" : event.agent_kind;

    const time = cell(row, "mono nowrap", formatTime(event.received_at));
    time.title = new Date(event.received_at * 1000).toISOString();

    const outcome = OUTCOMES.includes(event.outcome) ? event.outcome : "rejected";
    const label = outcome === "rejected" ? `${outcome} ${event.status}` : outcome;
    cell(row, "", el("span", `pill pill-${outcome}`, label));

    cell(row, "cell-name", event.name || "—");

    const page = cell(row, "cell-page");
    if (event.pathname) {
      page.append(el("div", "path", event.pathname), el("div", "host", event.hostname));
    } else {
      page.append(el("span", "muted", event.url || "—"));
    }
    page.title = event.url;

    const visitor = cell(row, "nowrap");
    if (event.visitor_id) {
      const id = el("span", "mono", event.visitor_id.slice(0, 8));
      id.title = event.visitor_id;
      visitor.append(id, el("div", "muted mono", event.client_ip));
    } else {
      visitor.append(el("span", "muted mono", event.client_ip));
    }

    const props = el("div", "chips");
    for (const [key, value] of Object.entries(event.props)) {
      const chip = el("span", "chip");
      chip.append(el("b", "", key), document.createTextNode(`: ${value}`));
      chip.title = `${key}: ${value}`;
      props.append(chip);
    }
    cell(row, "", Object.keys(event.props).length ? props : el("span", "muted", "—"));

    const revenue = event.revenue;
    cell(row, "nowrap mono", revenue ? `${revenue.amount} ${revenue.currency}` : "—");

    cell(row, event.interactive ? "muted" : "", event.interactive ? "yes" : "no");

    const agent = cell(row, "");
    agent.title = event.user_agent;
    if (event.agent_kind !== null) {
      agent.append(el("span", "pill pill-bot", event.agent_kind));
      const who = [event.agent_name, event.agent_operator].filter(Boolean).join(" · ");
      agent.append(el("div", "agent-line", who));
    } else {
      agent.append(el("span", "muted", "browser"));
    }

    const details = cell(row, "cell-details");
    if (event.drop_reason) details.append(el("span", "reason", event.drop_reason));
    if (event.errors) {
      const list = el("ul", "errors");
      for (const [field, messages] of Object.entries(event.errors)) {
        for (const message of messages) list.append(el("li", "", `${field}: ${message}`));
      }
      details.append(list);
    }
    if (event.outcome === "accepted" && event.referrer) {
      const referrer = el("span", "muted", `from ${event.referrer}`);
      referrer.title = event.referrer;
      details.append(referrer);
    }
    return row;
  }

  function addEvents(events) {
    if (!events.length) return;
    const fragment = document.createDocumentFragment();
    for (const event of events) {
      state.events.push(event);
      const row = buildRow(event);
      row.classList.add("fresh");
      row.hidden = !matches(event);
      state.rows.set(event.id, row);
      fragment.prepend(row);
      if (!state.names.has(event.name) && event.name) {
        state.names.add(event.name);
        byId("known-names").append(el("option", "", event.name));
      }
    }
    tbody.prepend(fragment);
    while (state.events.length > MAX_EVENTS) {
      const oldest = state.events.shift();
      state.rows.get(oldest.id)?.remove();
      state.rows.delete(oldest.id);
    }
    updateCounts();
  }

  function forget() {
    state.lastId = 0;
    state.events = [];
    state.rows.clear();
    tbody.replaceChildren();
    updateCounts();
  }

  function applyFilters() {
    for (const event of state.events) state.rows.get(event.id).hidden = !matches(event);
    updateCounts();
    drawChart();
  }

  function updateCounts() {
    const shown = state.events.filter(matches).length;
    byId("shown").textContent = `${shown} of ${state.events.length} shown`;
    byId("empty").hidden = state.events.length > 0;
    byId("no-match").hidden = state.events.length === 0 || shown > 0;
  }

  function updateTotals(totals) {
    for (const key of ["accepted", "dropped", "rejected", "requests", "faulted"]) {
      byId(`total-${key}`).textContent = String(totals[key]);
    }
  }

  // -- chart ---------------------------------------------------------------------------

  // The y axis has four gridlines at whole numbers: 1, 2, 3 or 5 times a power of ten.
  function tickStep(peak) {
    const wanted = Math.max(1, peak / 4);
    const magnitude = 10 ** Math.floor(Math.log10(wanted));
    for (const step of [1, 2, 3, 5, 10]) {
      if (step * magnitude >= wanted) return step * magnitude;
    }
    return 10 * magnitude;
  }

  function label(name) {
    return name || "(no name)";
  }

  function drawChart() {
    const canvas = byId("chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const now = Math.floor((Date.now() + state.offsetMs) / 1000);
    const bins = Array.from({ length: CHART_SECONDS }, () => new Map());
    const totals = new Map();
    for (const event of state.events) {
      const age = now - Math.floor(event.received_at);
      if (age < 0 || age >= CHART_SECONDS || !matches(event)) continue;
      const bin = bins[CHART_SECONDS - 1 - age];
      bin.set(event.name, (bin.get(event.name) || 0) + 1);
      totals.set(event.name, (totals.get(event.name) || 0) + 1);
    }
    const names = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a));
    const peak = Math.max(0, ...bins.map((bin) => [...bin.values()].reduce((a, b) => a + b, 0)));
    const step = tickStep(peak);
    const top = step * 4;

    const left = 34;
    const right = 8;
    const topPad = 8;
    const bottom = 20;
    const plotWidth = width - left - right;
    const plotHeight = height - topPad - bottom;

    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i <= 4; i += 1) {
      const value = step * i;
      const y = topPad + plotHeight - (plotHeight * i) / 4;
      ctx.strokeStyle = i === 0 ? "#c9cdd9" : "#eceef4";
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(width - right, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillStyle = "#8a8fa3";
      ctx.fillText(String(value), left - 6, y);
    }

    const slot = plotWidth / CHART_SECONDS;
    const barWidth = Math.max(1, slot - 2);
    bins.forEach((bin, index) => {
      let y = topPad + plotHeight;
      for (const name of names) {
        const count = bin.get(name);
        if (!count) continue;
        const barHeight = (plotHeight * count) / top;
        ctx.fillStyle = colorFor(name);
        ctx.fillRect(left + index * slot + 1, y - barHeight, barWidth, barHeight);
        y -= barHeight;
      }
    });

    ctx.fillStyle = "#8a8fa3";
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    ctx.fillText(`${CHART_SECONDS}s ago`, left, height - 5);
    ctx.textAlign = "center";
    ctx.fillText(`${CHART_SECONDS / 2}s`, left + plotWidth / 2, height - 5);
    ctx.textAlign = "right";
    ctx.fillText("now", width - right, height - 5);

    updateLegend(names, totals);
  }

  function updateLegend(names, totals) {
    const key = names.map((name) => `${name}\u0000${totals.get(name)}`).join("\u0001");
    if (key === state.legendKey) return;
    state.legendKey = key;
    const legend = byId("legend");
    legend.replaceChildren();
    if (!names.length) {
      legend.append(el("li", "", "No events in the last minute."));
      return;
    }
    for (const name of names) {
      const item = el("li");
      const swatch = el("span", "swatch");
      swatch.style.background = colorFor(name);
      item.append(swatch, el("span", "legend-name", label(name)), el("span", "", totals.get(name)));
      item.title = label(name);
      legend.append(item);
    }
  }

  // -- feed ----------------------------------------------------------------------------

  function setStatus(live, text) {
    const status = byId("status");
    status.dataset.state = live ? "live" : "offline";
    status.textContent = text;
  }

  async function poll() {
    try {
      const response = await fetch(`_inspector/events?after=${state.lastId}`, { cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const feed = await response.json();
      state.offsetMs = feed.now * 1000 - Date.now();
      if (feed.last_id < state.lastId) {
        forget(); // a new receiver on the same address: start over from id 0
        return;
      }
      addEvents(feed.events);
      state.lastId = Math.max(state.lastId, feed.last_id);
      updateTotals(feed.totals);
      setStatus(true, "live");
    } catch (error) {
      setStatus(false, `receiver unreachable (${error.message})`);
    } finally {
      drawChart();
      window.setTimeout(poll, POLL_MS);
    }
  }

  for (const control of Object.values(filters)) {
    control.addEventListener("input", applyFilters);
    control.addEventListener("change", applyFilters);
  }
  byId("filters").addEventListener("reset", () => window.setTimeout(applyFilters, 0));
  byId("filters").addEventListener("submit", (submit) => submit.preventDefault());
  window.addEventListener("resize", drawChart);
  updateCounts();
  poll();
})();
