// The coffee board: places orders, shows every order by status as the
// pipeline decides (Server-Sent Events from the gateway), lets customers
// cancel what has not started brewing, and charts demand per drink.
"use strict";

const STATUSES = ["pending", "processing", "brewing", "completed", "cancelled"];
const CANCELLABLE = new Set(["pending", "processing"]);
const MINUTE = 60 * 1000;
const orders = new Map(); // id -> order
const demand = new Map(); // "drink|minute-start-ms" -> orders
let drinks = [];

const $ = (selector) => document.querySelector(selector);

function say(text, kind) {
  const message = $("#form-message");
  message.textContent = text;
  message.className = "message " + (kind || "");
}

// The API's errors are JSON {success:false, error:{code, message}}; show
// their message in words, and something useful when there is none.
async function call(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (error) {
    throw new Error("The coffee shop cannot be reached. Check your connection and try again.");
  }
  let json = null;
  try {
    json = await response.json();
  } catch (error) {
    json = null;
  }
  if (!response.ok) {
    const message = json && json.error && json.error.message;
    const failure = new Error(message || `The request failed (HTTP ${response.status}).`);
    failure.status = response.status;
    failure.code = json && json.error && json.error.code;
    throw failure;
  }
  return { status: response.status, json };
}

function timeOf(value) {
  const date = new Date(value);
  return isNaN(date) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function card(order) {
  const item = document.createElement("li");
  item.className = "order";
  item.dataset.id = order.id;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = order.customer_name;
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = order.coffee_type;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = timeOf(order.updated_at || order.created_at);
  item.append(who, what, when);
  if (order.note) {
    const note = document.createElement("span");
    note.className = "note";
    note.textContent = order.note;
    item.append(note);
  }
  if (CANCELLABLE.has(order.status)) {
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "cancel";
    cancel.textContent = "Cancel";
    cancel.setAttribute("aria-label", `Cancel ${order.customer_name}'s ${order.coffee_type}`);
    cancel.addEventListener("click", () => cancelOrder(order.id, cancel));
    item.append(cancel);
  }
  return item;
}

// Puts an order in its status's column (newest first), replacing its card.
function show(order) {
  const known = orders.get(order.id);
  // A decision never goes back in the lifecycle; refusals keep the status.
  if (known && STATUSES.indexOf(order.status) < STATUSES.indexOf(known.status) && order.status !== "cancelled") {
    return;
  }
  orders.set(order.id, Object.assign({}, known, order));
  const existing = document.querySelector(`li.order[data-id="${CSS.escape(order.id)}"]`);
  if (existing) existing.remove();
  const list = document.querySelector(`ul[data-status="${order.status}"]`);
  if (!list) return;
  list.prepend(card(orders.get(order.id)));
  for (const status of STATUSES) {
    const count = document.querySelector(`[data-count="${status}"]`);
    count.textContent = document.querySelectorAll(`ul[data-status="${status}"] > li`).length;
  }
}

async function loadMenu() {
  const select = $("#drink");
  try {
    const { json } = await call("GET", "/v1/menu");
    drinks = json.menu.map((item) => item.name);
    select.replaceChildren();
    const prompt = new Option("Choose a drink…", "");
    select.append(prompt);
    for (const item of json.menu) {
      select.append(new Option(`${item.name} (${item.preparation_time_s} s)`, item.name));
    }
  } catch (error) {
    select.replaceChildren(new Option("The menu is unavailable", ""));
    say(error.message, "error");
  }
}

async function loadOrders() {
  try {
    const { json } = await call("GET", "/v1/orders?page_size=100");
    for (const order of json.orders.slice().reverse()) show(order);
  } catch (error) {
    // The pipeline may still be starting; live updates fill the board.
    if (error.status !== 503) say(error.message, "error");
  }
}

async function placeOrder(event) {
  event.preventDefault();
  const name = $("#customer").value.trim();
  const drink = $("#drink").value;
  if (!name) {
    say("Please enter your name.", "error");
    $("#customer").focus();
    return;
  }
  if (!drink) {
    say("Please choose a drink.", "error");
    $("#drink").focus();
    return;
  }
  const button = $("#place");
  button.disabled = true;
  try {
    const { json } = await call("POST", "/v1/order", { customer_name: name, coffee_type: drink });
    show(json.order);
    say(json.msg || `Order for ${name} placed.`, "ok");
  } catch (error) {
    say(error.message, "error");
  } finally {
    button.disabled = false;
  }
}

async function cancelOrder(id, button) {
  button.disabled = true;
  try {
    const { status, json } = await call("POST", `/v1/order/${encodeURIComponent(id)}/cancel`);
    if (json && json.order) show(json.order);
    say(status === 202 ? "Cancel requested; waiting for the barista's answer." : (json.msg || "Order cancelled."), "ok");
  } catch (error) {
    say(error.message, "error");
    button.disabled = false;
  }
}

function addDemand(drink, minute, count) {
  const key = `${drink}|${minute}`;
  demand.set(key, (demand.get(key) || 0) + count);
}

async function loadDemand() {
  try {
    const since = new Date(Date.now() - 10 * MINUTE).toISOString();
    const { json } = await call("GET", `/v1/demand?from=${encodeURIComponent(since)}`);
    demand.clear();
    for (const window of json.windows) {
      addDemand(window.coffee_type, Date.parse(window.window_start), window.orders);
    }
    drawDemand();
  } catch (error) {
    drawDemand();
  }
}

// Stacked bars: one per minute of the last ten, one colour per drink.
function drawDemand() {
  const colours = ["#1d4ed8", "#b45309", "#047857", "#9d174d", "#6d28d9", "#0e7490"];
  const now = Math.floor(Date.now() / MINUTE) * MINUTE;
  const minutes = Array.from({ length: 10 }, (_, i) => now - (9 - i) * MINUTE);
  const names = drinks.length ? drinks : Array.from(new Set([...demand.keys()].map((k) => k.split("|")[0])));
  const totals = minutes.map((m) => names.reduce((sum, d) => sum + (demand.get(`${d}|${m}`) || 0), 0));
  const top = Math.max(1, ...totals);
  const width = 600, height = 220, left = 36, bottom = 24, barWidth = (width - left - 10) / minutes.length;
  const parts = [`<svg viewBox="0 0 ${width} ${height + 40}" role="img" aria-label="Orders per drink per minute, last ten minutes">`];
  parts.push(`<line x1="${left}" y1="${height - bottom}" x2="${width}" y2="${height - bottom}" stroke="#334155"/>`);
  parts.push(`<text x="4" y="14" font-size="11" fill="#334155">${top}</text><text x="4" y="${height - bottom}" font-size="11" fill="#334155">0</text>`);
  minutes.forEach((minute, i) => {
    let y = height - bottom;
    names.forEach((drink, d) => {
      const count = demand.get(`${drink}|${minute}`) || 0;
      if (!count) return;
      const h = (count / top) * (height - bottom - 16);
      y -= h;
      parts.push(`<rect x="${left + i * barWidth + 4}" y="${y.toFixed(1)}" width="${(barWidth - 8).toFixed(1)}" height="${h.toFixed(1)}" fill="${colours[d % colours.length]}"><title>${drink}: ${count}</title></rect>`);
    });
    const label = new Date(minute).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    parts.push(`<text x="${left + i * barWidth + barWidth / 2}" y="${height - 8}" font-size="10" text-anchor="middle" fill="#334155">${label}</text>`);
  });
  names.forEach((drink, d) => {
    const x = left + d * 110;
    parts.push(`<rect x="${x}" y="${height + 12}" width="12" height="12" fill="${colours[d % colours.length]}"/><text x="${x + 16}" y="${height + 22}" font-size="12" fill="#0f172a">${drink}</text>`);
  });
  parts.push("</svg>");
  $("#demand-chart").innerHTML = parts.join("");
  const rows = [];
  for (const minute of minutes) {
    for (const drink of names) {
      const count = demand.get(`${drink}|${minute}`) || 0;
      if (count) rows.push(`<tr><td>${new Date(minute).toLocaleTimeString()}</td><td>${drink}</td><td>${count}</td></tr>`);
    }
  }
  $("#demand-table tbody").innerHTML = rows.join("");
}

function listen() {
  const connection = $("#connection");
  const events = new EventSource("/v1/events");
  events.addEventListener("open", () => {
    connection.textContent = "Live";
  });
  events.addEventListener("order", (event) => {
    const order = JSON.parse(event.data);
    if (order.refused) {
      const known = orders.get(order.id);
      order.note = order.refused === "cancel_requested" ? `Cancel refused: ${order.reason}` : undefined;
      if (known && !order.note) return;
    }
    if (order.status === "processing" && !order.refused) {
      addDemand(order.coffee_type, Math.floor(Date.parse(order.created_at || order.updated_at) / MINUTE) * MINUTE, 1);
      drawDemand();
    }
    show(order);
  });
  events.addEventListener("error", () => {
    // EventSource reconnects by itself; say so meanwhile.
    connection.textContent = "Reconnecting…";
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#order-form").addEventListener("submit", placeOrder);
  listen();
  await loadMenu();
  await Promise.all([loadOrders(), loadDemand()]);
  setInterval(drawDemand, 15 * 1000);
});
