"use strict";
// The live view: draws what /live/events sends, once a second, without reloading.
// window.keftaLive holds the last event and the projected points, for tests.
(() => {
  const COLORS = { low: "#4fd1a1", medium: "#f5c04a", high: "#f2637a" };
  const state = (window.keftaLive = {
    config: null, event: null, events: 0, points: [], outside: 0, rates: [],
  });
  const $ = (id) => document.getElementById(id);
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const number = new Intl.NumberFormat("en-US");
  const money = new Intl.NumberFormat("en-US", {
    minimumFractionDigits: 2, maximumFractionDigits: 2,
  });
  const background = new Image();
  background.onload = () => draw();
  background.src = "background.png";

  function project(lat, lon) {
    const box = state.config.box;
    return [
      ((lon - box.west) / (box.east - box.west)) * canvas.width,
      ((box.north - lat) / (box.north - box.south)) * canvas.height,
    ];
  }

  function inBox(lat, lon) {
    const box = state.config.box;
    return lat >= box.south && lat <= box.north && lon >= box.west && lon <= box.east;
  }

  function draw() {
    ctx.fillStyle = "#0d1526";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (background.complete && background.naturalWidth) {
      ctx.drawImage(background, 0, 0, canvas.width, canvas.height);
    }
    if (!state.config || !state.event) return;
    const tiers = state.config.tiers;
    // Rides whose client stands outside the map (Long Island, upstate) are left out.
    const shown = state.event.points.filter(([lat, lon]) => inBox(lat, lon));
    ctx.strokeStyle = "rgba(220, 227, 238, 0.10)";
    ctx.beginPath();
    for (const [clat, clon, dlat, dlon] of shown) {
      const [cx, cy] = project(clat, clon);
      const [dx, dy] = project(dlat, dlon);
      ctx.moveTo(dx, dy);
      ctx.lineTo(cx, cy);
    }
    ctx.stroke();
    ctx.fillStyle = "rgba(195, 200, 212, 0.55)";
    for (const [, , dlat, dlon] of shown) {
      const [dx, dy] = project(dlat, dlon);
      ctx.fillRect(dx - 1, dy - 1, 2, 2);
    }
    const projected = [];
    for (const [clat, clon, , , tier] of shown) {
      const [x, y] = project(clat, clon);
      ctx.fillStyle = COLORS[tiers[tier]] || "#ffffff";
      ctx.beginPath();
      ctx.arc(x, y, 2.6, 0, 2 * Math.PI);
      ctx.fill();
      projected.push({ lat: clat, lon: clon, x, y, tier: tiers[tier] });
    }
    state.points = projected;
    state.outside = state.event.points.length - shown.length;
    canvas.dataset.points = String(projected.length);
    $("shown").textContent = number.format(projected.length);
  }

  function setValue(id, value, text) {
    const node = $(id);
    node.dataset.value = String(value);
    node.textContent = text === undefined ? number.format(value) : text;
  }

  function sparkline() {
    const spark = $("spark");
    const g = spark.getContext("2d");
    const values = state.rates;
    const top = Math.max(1, ...values);
    g.clearRect(0, 0, spark.width, spark.height);
    g.strokeStyle = "#6ea0e6";
    g.beginPath();
    values.forEach((v, i) => {
      const x = (i / 59) * spark.width;
      const y = spark.height - 2 - (v / top) * (spark.height - 4);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }

  function revenue(event) {
    const box = $("revenue");
    const tiers = state.config.tiers;
    const top = Math.max(1, ...tiers.map((t) => event.revenue[t] || 0));
    box.replaceChildren(...tiers.map((tier) => {
      const value = event.revenue[tier] || 0;
      const row = document.createElement("div");
      row.className = "row";
      row.dataset.tier = tier;
      row.dataset.value = String(value);
      const label = document.createElement("span");
      label.textContent = tier;
      const track = document.createElement("div");
      track.className = "track";
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${(100 * value) / top}%`;
      fill.style.background = COLORS[tier];
      track.append(fill);
      const amount = document.createElement("span");
      amount.className = "amount";
      amount.textContent = money.format(value);
      row.append(label, track, amount);
      return row;
    }));
    $("revenue-rides").textContent = number.format(event.revenue_rides);
  }

  function sinks(event) {
    const list = $("sinks");
    if (!event.sinks.length) return;
    list.replaceChildren(...event.sinks.map((sink) => {
      const item = document.createElement("li");
      item.dataset.ok = String(sink.ok);
      item.dataset.sink = sink.name;
      const name = document.createElement("span");
      name.textContent = sink.name;
      const status = document.createElement("span");
      status.className = "state";
      status.textContent = sink.ok
        ? "ok"
        : `down since ${sink.down_since} (${Math.round(sink.down_seconds)} s)`;
      item.append(name, status);
      return item;
    }));
  }

  function deadClasses(event) {
    const body = $("dead-classes").tBodies[0];
    const entries = Object.entries(event.dead_letters.by_class)
      .sort((a, b) => b[1] - a[1]);
    if (!entries.length) return;
    body.replaceChildren(...entries.map(([name, count]) => {
      const row = document.createElement("tr");
      const cell = document.createElement("td");
      cell.textContent = name;
      const value = document.createElement("td");
      value.className = "count";
      value.textContent = number.format(count);
      row.append(cell, value);
      return row;
    }));
  }

  function render(event) {
    state.event = event;
    state.events += 1;
    state.rates = [...state.rates, event.rate].slice(-60);
    setValue("rides", event.rides);
    setValue("rate", event.rate, number.format(Math.round(event.rate)));
    setValue("dead", event.dead_letters.total);
    setValue("uncommitted", event.uncommitted);
    revenue(event);
    sinks(event);
    deadClasses(event);
    sparkline();
    draw();
  }

  function status(text, mode) {
    const node = $("status");
    node.textContent = text;
    node.dataset.state = mode;
  }

  const source = new EventSource("events");
  source.addEventListener("config", (message) => {
    state.config = JSON.parse(message.data);
    canvas.width = state.config.width;
    canvas.height = state.config.height;
    draw();
  });
  source.addEventListener("live", (message) => {
    render(JSON.parse(message.data));
    status(`live · ${state.event.time}`, "live");
  });
  source.onerror = () => status("connection lost, retrying…", "lost");
})();
