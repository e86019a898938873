// mindprint web app: sign-in with an EIP-1193 wallet, forms over the REST API, plots with uPlot.
// No build step, no third-party origin: this file, htmx and uPlot ship with the package.
"use strict";

const HEADERS = { "X-Requested-With": "mindprint" };

// htmx swaps error answers too (the server sends a short HTML reason for them)
if (window.htmx) {
  window.htmx.config.responseHandling = [{ code: "204", swap: false }, { code: "...", swap: true }];
}

async function api(method, path, body, contentType = "application/json") {
  const init = { method, headers: { ...HEADERS }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = contentType;
    init.body = contentType === "application/json" ? JSON.stringify(body) : body;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && data.detail;
    const message = Array.isArray(detail) ? detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ") : detail;
    throw new Error(message || `${response.status} ${response.statusText}`);
  }
  return data;
}

function hexOf(text) {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ------------------------------------------------------------------ sign-in (EIP-4361)
async function signIn(button) {
  const status = document.getElementById("signin-status");
  const say = (text) => { status.textContent = text; };
  if (!window.ethereum) {
    say("No Ethereum wallet found in this browser (an EIP-1193 provider such as MetaMask or Rabby).");
    return;
  }
  try {
    button.disabled = true;
    say("Asking your wallet for an account…");
    const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
    const { message } = await api("POST", "/auth/nonce", { address });
    say("Sign the message in your wallet…");
    const signature = await window.ethereum.request({ method: "personal_sign", params: [hexOf(message), address] });
    const session = await api("POST", "/ui/session", { message, signature });
    say(`Signed in as ${session.role}.`);
    window.location.assign(button.dataset.next || "/ui/");
  } catch (err) {
    say(`Sign-in failed: ${err.message || err}`);
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ requester forms
async function createProject(form) {
  const field = (name) => form.elements[name].value.trim();
  const kind = field("kind");
  const body = {
    name: field("name"),
    description: field("description"),
    redundancy: Number(field("redundancy") || 3),
    challenge_cues: Number(field("challenge_cues") || 0),
    reward_pool: BigInt(Math.round(Number(field("reward_pool") || 0) * 1e6)) * 10n ** 12n + "",
    label_schema: { kind, classes: kind === "classes" ? field("classes").split(",").map((c) => c.trim()).filter(Boolean) : [] },
  };
  const project = await api("POST", "/projects", body);
  window.location.assign(`/ui/projects/${project.id}`);
}

function parseCsv(text) {
  // RFC 4180: quoted fields may hold commas, quotes ("") and newlines
  const rows = [];
  let row = [], cell = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(cell); cell = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += c;
  }
  if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
  const [head, ...body] = rows.filter((r) => r.some((v) => v.trim() !== ""));
  if (!head) return [];
  const names = head.map((h) => h.trim().toLowerCase());
  return body.map((r) => Object.fromEntries(names.map((n, i) => [n, (r[i] || "").trim()])));
}

function itemOf(record) {
  const text = record.text ?? record.content?.text;
  const imageCid = record.image_cid ?? record.content?.image_cid;
  const item = { content: imageCid ? { image_cid: imageCid } : { text: String(text ?? "") } };
  if (record.gold !== undefined && record.gold !== null && record.gold !== "") item.gold = record.gold;
  return item;
}

async function uploadItems(form) {
  const project = form.dataset.project;
  const status = form.querySelector(".status");
  const items = [];
  const file = form.elements.file.files[0];
  if (file) {
    const text = await file.text();
    const records = file.name.toLowerCase().endsWith(".json") || text.trim().startsWith("[") ? JSON.parse(text) : parseCsv(text);
    if (!Array.isArray(records)) throw new Error("a JSON items file holds a list");
    items.push(...records.map(itemOf));
  }
  for (const image of form.elements.images.files) {
    status.textContent = `pinning ${image.name}…`;
    const { cid } = await api("POST", `/projects/${project}/images`, image, image.type);
    items.push({ content: { image_cid: cid } });
  }
  if (!items.length) throw new Error("choose an items file or images first");
  let added = 0;
  for (let i = 0; i < items.length; i += 1000) {
    const { ids } = await api("POST", `/projects/${project}/items`, { items: items.slice(i, i + 1000) });
    added += ids.length;
    status.textContent = `${added} / ${items.length} items added`;
  }
  window.location.reload();
}

function guard(form, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = form.querySelector(".error");
    if (error) error.textContent = "";
    try { await action(form); } catch (err) { if (error) error.textContent = err.message || String(err); }
  });
}

// ------------------------------------------------------------------ plots
const COLOURS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];

function width(el) { return Math.max(320, el.clientWidth || el.parentElement.clientWidth || 640); }

function timelinePlot(el) {
  const t = JSON.parse(el.dataset.timeline);
  if (!t.t.length) { el.innerHTML = '<p class="muted">No samples yet.</p>'; return; }
  const reasons = Object.keys(t.reasons);
  const series = [{}, { label: "accepted", stroke: "#059669", width: 2 }, { label: "rejected", stroke: "#dc2626", width: 2 }];
  reasons.forEach((r, i) => series.push({ label: r, stroke: COLOURS[(i + 3) % COLOURS.length], dash: [4, 3] }));
  new uPlot({ width: width(el), height: 220, series, axes: [{}, { label: `samples per ${t.width === 60 ? "minute" : "hour"}` }] },
    [t.t, t.accepted, t.rejected, ...reasons.map((r) => t.reasons[r])], el);
}

function markers(times) {
  // vertical lines at the stimulus (solid) and the response (dashed)
  return {
    hooks: {
      draw: [(u) => {
        const { ctx } = u;
        times.forEach(([x, dash, colour]) => {
          const px = u.valToPos(x, "x", true);
          ctx.save(); ctx.strokeStyle = colour; ctx.lineWidth = 2; ctx.setLineDash(dash);
          ctx.beginPath(); ctx.moveTo(px, u.bbox.top); ctx.lineTo(px, u.bbox.top + u.bbox.height); ctx.stroke(); ctx.restore();
        });
      }],
    },
  };
}

function stacked(data) {
  // each channel offset by a robust spacing so traces do not overlap
  const spread = data.channels.map((c) => { const s = [...c].map(Math.abs).sort((a, b) => a - b); return s[Math.floor(s.length * 0.95)] || 1; });
  const spacing = 2 * Math.max(...spread, 1);
  const n = data.channels.length;
  return { spacing, rows: data.channels.map((c, i) => c.map((v) => v + (n - 1 - i) * spacing)) };
}

function qualityColour(q) { return q >= 0.8 ? "good" : q >= 0.5 ? "fair" : "bad"; }

function renderQuality(el, names, quality) {
  el.innerHTML = names.map((name, i) =>
    `<span class="q ${qualityColour(quality[i])}" title="quality ${quality[i].toFixed(2)}">${name}<b>${quality[i].toFixed(2)}</b></span>`).join("");
}

async function epochPlots(el) {
  const data = await (await fetch(el.dataset.epoch, { credentials: "same-origin" })).json();
  el.innerHTML = "";
  if (!data.channels) { el.innerHTML = `<p class="error">${data.detail || "no epoch"}</p>`; return; }
  const { spacing, rows } = stacked(data);
  const series = [{ label: "s" }, ...data.names.map((name, i) => ({ label: name, stroke: COLOURS[i % COLOURS.length], width: 1 }))];
  const n = data.names.length;
  new uPlot({
    width: width(el), height: Math.max(240, 40 * n + 60), series, legend: { show: true },
    scales: { x: { time: false }, y: { range: [-spacing, n * spacing] } },
    axes: [{ label: "seconds from stimulus" }, { space: 8,
      values: (u, ticks) => ticks.map((v) => { const i = n - 1 - Math.round(v / spacing); return Math.abs(v - Math.round(v / spacing) * spacing) < 1e-6 && i >= 0 && i < n ? data.names[i] : ""; }),
      splits: () => data.names.map((_, i) => i * spacing),
    }],
    plugins: [markers([[data.stimulus, [], "#111"], [data.response, [6, 4], "#dc2626"]])],
  }, [data.t, ...rows], el);
  el.dataset.plotted = "true";
  const psd = document.getElementById("psd");
  if (psd) {
    new uPlot({ width: width(psd), height: 240, scales: { x: { time: false } }, series: [{ label: "Hz" }, ...data.names.map((name, i) => ({ label: name, stroke: COLOURS[i % COLOURS.length] }))],
      axes: [{ label: "Hz" }, { label: "log10 µV²/Hz" }] }, [data.psd.f, ...data.psd.p], psd);
  }
  const quality = document.getElementById("quality");
  if (quality) renderQuality(quality, data.names, data.quality);
}

// ------------------------------------------------------------------ wiring
document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("signin");
  if (button) button.addEventListener("click", () => signIn(button));
  document.querySelectorAll("[data-signout]").forEach((b) => b.addEventListener("click", async () => {
    await api("POST", "/ui/signout");
    window.location.assign("/ui/signin");
  }));
  const project = document.getElementById("new-project");
  if (project) guard(project, createProject);
  const items = document.getElementById("items-upload");
  if (items) guard(items, uploadItems);
  document.querySelectorAll("[data-timeline]").forEach(timelinePlot);
  document.querySelectorAll("[data-epoch]").forEach((el) => epochPlots(el).catch((err) => { el.innerHTML = `<p class="error">${err}</p>`; }));
});

window.mindprint = { api, parseCsv, stacked, renderQuality, qualityColour, markers, COLOURS, width };
