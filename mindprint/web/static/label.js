// The companion's labeling page: shows each task, reports when it is on screen (stimulus
// marker) and the answer (response marker), and shows live EEG, quality and verdicts.
"use strict";

(() => {
  const { api, stacked, renderQuality, COLOURS, width } = window.mindprint;
  const $ = (id) => document.getElementById(id);
  let shownTask = null, shownPresentation = 0, answered = false, options = [], trialsSeen = -1, livePlot = null;
  const axis = { spacing: 1, names: [] };  // the live plot's channel rows, read at every redraw

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function choices(schema) {
    if (schema.kind === "classes") return schema.classes;
    if (schema.kind === "rating") {
      const out = [];
      for (let v = schema.rating_min; v <= schema.rating_max; v++) out.push(v);
      return out;
    }
    return null; // free text
  }

  async function answer(label) {
    if (!shownTask || answered) return;
    answered = true;
    document.querySelectorAll("#answers button, #answers input").forEach((b) => { b.disabled = true; });
    $("phase").textContent = `answered “${label}”: signing and submitting…`;
    try { await api("POST", "/api/answer", { task: shownTask.id, label }); }
    catch (err) { $("phase").textContent = `could not answer: ${err.message}`; }
  }

  // challenge–response: flash a cue at each offset the platform drew for this lease, and
  // report it once painted (the companion inserts the "cue" marker then)
  function scheduleCues(task, painted) {
    const offsets = (task.challenge && task.challenge.offsets_ms) || [];
    offsets.forEach((offset, index) => {
      setTimeout(() => {
        if (!shownTask || shownTask.id !== task.id) return;
        const box = $("stimulus");
        box.classList.add("cue");
        requestAnimationFrame(() => requestAnimationFrame(() => {
          api("POST", "/api/cue", { task: task.id, index }).catch(() => {});
          setTimeout(() => box.classList.remove("cue"), 100);
        }));
      }, Math.max(0, painted + offset - performance.now()));
    });
  }

  function show(task, notice) {
    shownTask = task; answered = false;
    $("task-id").textContent = `#${task.id}`;
    const stimulus = $("stimulus");
    stimulus.classList.remove("muted");
    const report = () => requestAnimationFrame(() => requestAnimationFrame(async () => {
      // two frames: the task has been painted when this runs
      const painted = performance.now();
      try {
        await api("POST", "/api/shown", { task: task.id });
        scheduleCues(task, painted);
        document.querySelectorAll("#answers button, #answers input").forEach((b) => { b.disabled = false; });
        $("phase").textContent = notice ? `${notice}: answer again` : "answer with a button or its key";
      } catch (err) { $("phase").textContent = err.message; }
    }));
    if (task.content.image_cid) {
      stimulus.innerHTML = "";
      const img = new Image();
      img.alt = `task ${task.id}`;
      img.onload = report;
      img.src = `/images/${encodeURIComponent(task.content.image_cid)}`;
      stimulus.appendChild(img);
    } else {
      stimulus.textContent = task.content.text;
    }
    options = choices(task.label_schema);
    const box = $("answers");
    if (options) {
      box.innerHTML = options.map((o, i) => `<button disabled data-label="${escapeHtml(o)}"><kbd>${i + 1}</kbd>${escapeHtml(o)}</button>`).join("");
      box.querySelectorAll("button").forEach((b, i) => b.addEventListener("click", () => answer(options[i])));
    } else {
      box.innerHTML = '<input id="free" disabled placeholder="type your answer, then Enter" size="40">';
      $("free").addEventListener("keydown", (e) => { if (e.key === "Enter" && e.target.value.trim()) answer(e.target.value.trim()); });
    }
    if (!task.content.image_cid) report();
  }

  document.addEventListener("keydown", (event) => {
    if (!options || !shownTask || answered || event.target.tagName === "INPUT") return;
    const n = Number(event.key);
    if (n >= 1 && n <= options.length) answer(options[n - 1]);
  });

  function renderTrials(trials) {
    $("trials").querySelector("tbody").innerHTML = trials.slice().reverse().map((t) => `<tr class="trial">
      <td>${t.task}</td><td>${escapeHtml(t.label)}</td><td>${t.response_time.toFixed(2)} s</td>
      <td><span class="badge ${t.status}">${t.status}</span></td>
      ${["authenticity", "liveness", "attention", "challenge"].map((s) => `<td class="num">${t.scores[s] !== undefined ? t.scores[s].toFixed(2) : "–"}</td>`).join("")}
      <td>${t.reasons.length ? t.reasons.map(escapeHtml).join("<br>") : '<span class="muted">every check passed</span>'}${(t.repeats || []).map((r) => `<br><span class="muted">shown again: ${escapeHtml(r)}</span>`).join("")}</td>
      <td><code title="${t.sample_cid || ""}">${t.sample_cid ? t.sample_cid.slice(0, 12) + "…" : ""}</code></td></tr>`).join("");
  }

  async function poll() {
    try {
      const state = await api("GET", "/api/state");
      $("progress").textContent = `(${state.trials.length} of ${state.count} done)`;
      if (state.trials.length !== trialsSeen) { trialsSeen = state.trials.length; renderTrials(state.trials); loadRewards(); loadHistory(); }
      // a new presentation: the next task, or the same one again after the headset lost data
      if (state.phase === "showing" && state.task && (!shownTask || state.presentation !== shownPresentation)) {
        shownPresentation = state.presentation;
        show(state.task, state.notice);
      }
      if (state.phase === "waiting") { $("phase").textContent = state.notice || "next task in a moment (recording the EEG before it)…"; $("stimulus").textContent = "+"; $("answers").innerHTML = ""; }
      if (state.phase === "done") { $("phase").textContent = "all done: thank you."; $("stimulus").textContent = "✓"; $("answers").innerHTML = ""; return; }
      if (state.phase === "failed") { $("phase").textContent = `stopped: ${state.error}`; return; }
    } catch (err) { $("phase").textContent = `companion unreachable: ${err.message}`; }
    setTimeout(poll, 250);
  }

  async function live() {
    try {
      const data = await api("GET", "/api/eeg");
      if (data.ready) {
        const { spacing, rows } = stacked(data);
        const n = data.names.length;
        axis.spacing = spacing; axis.names = data.names;  // read by the axis on every redraw
        if (!livePlot) {
          const el = $("live");
          livePlot = new uPlot({
            width: width(el), height: Math.max(200, 28 * n + 50), legend: { show: false },
            series: [{}, ...data.names.map((name, i) => ({ label: name, stroke: COLOURS[i % COLOURS.length], width: 1 }))],
            scales: { x: { time: false }, y: { range: () => [-axis.spacing, axis.names.length * axis.spacing] } },
            axes: [{ label: "seconds" }, {
              space: 8,
              splits: () => axis.names.map((_, i) => i * axis.spacing),
              values: (u, ticks) => ticks.map((v) => axis.names[axis.names.length - 1 - Math.round(v / axis.spacing)] || ""),
            }],
          }, [data.t, ...rows], el);
        } else {
          livePlot.setData([data.t, ...rows]);
        }
        renderQuality($("live-quality"), data.names, data.quality);
        $("bands").innerHTML = Object.entries(data.bands).map(([b, v]) => `<div style="height:${Math.max(8, 100 * v)}%" title="${b} ${(100 * v).toFixed(0)} %">${b}<br>${(100 * v).toFixed(0)}%</div>`).join("");
      }
    } catch (err) { /* the recording may be starting */ }
    setTimeout(live, 500);
  }

  async function loadHistory() {
    try {
      const rows = await api("GET", "/api/history");
      $("history").querySelector("tbody").innerHTML = rows.map((r) => `<tr class="past">
        <td>${escapeHtml(r.created.replace("T", " ").slice(0, 19))}</td><td>${r.task_id}</td><td>${escapeHtml(r.label)}</td>
        <td><span class="badge ${r.status}">${r.status}</span></td>
        <td class="num">${r.scores.liveness !== undefined ? r.scores.liveness.toFixed(2) : "–"}</td>
        <td class="num">${r.scores.attention !== undefined ? r.scores.attention.toFixed(2) : "–"}</td>
        <td><code title="${r.sample_cid}">${r.sample_cid.slice(0, 12)}…</code></td></tr>`).join("");
    } catch (err) { /* shown again at the next verdict */ }
  }

  async function loadRewards() {
    try {
      const r = await api("GET", "/api/rewards");
      const total = r.claims.reduce((s, c) => s + Number(c.amount) / 1e18, 0);
      $("rewards").textContent = `${r.accepted_samples} accepted samples · ${r.claims.length} closed reward epochs · ${total.toFixed(4)} MIND to claim`;
      $("claim").disabled = !(r.can_claim && r.claims.length);
      if (!r.can_claim) $("claim-status").textContent = "claims need a chain endpoint (start with --rpc-url)";
    } catch (err) { $("rewards").textContent = err.message; }
  }

  $("claim").addEventListener("click", async () => {
    $("claim").disabled = true;
    try { const r = await api("POST", "/api/claim", {}); $("claim-status").textContent = `claimed epoch ${r.epoch} in ${r.tx_hash}`; }
    catch (err) { $("claim-status").textContent = err.message; $("claim").disabled = false; }
  });

  poll(); live();
})();
