// The agent's status page: live over the WebSocket, no card data kept after removal.
import { ThaiCardAgent } from "/v1/client.js";

const $ = (id) => document.getElementById(id);
const agent = new ThaiCardAgent({ base: location.origin, photo: true });
let demo = false;

const STATE_TEXT = {
  connecting: "กำลังเชื่อมต่อ · Connecting",
  open: "เชื่อมต่อแล้ว · Connected",
  closed: "ขาดการเชื่อมต่อ · Disconnected",
};
const READER_TEXT = {
  empty: "ไม่มีบัตร · No card",
  reading: "กำลังอ่านบัตร… · Reading…",
  ready: "มีบัตร · Card inserted",
  error: "อ่านบัตรไม่ได้ · Read failed",
};

export function maskCitizenId(cid) {
  if (!cid || cid.length !== 13) return "x".repeat((cid || "").length);
  return `${cid[0]}-${cid.slice(1, 5)}-xxxxx-xx-${cid[12]}`;
}

function beDate(date) {
  if (!date) return "";
  if (date.lifelong) return "ตลอดชีพ · Lifelong";
  const raw = date.raw || "";
  if (date.precision === "day") return `${raw.slice(6)}/${raw.slice(4, 6)}/${raw.slice(0, 4)}`;
  if (date.precision === "month") return `${raw.slice(4, 6)}/${raw.slice(0, 4)}`;
  if (date.precision === "year") return raw.slice(0, 4);
  return raw;
}

function renderReader(r) {
  const node = $("reader-template").content.firstElementChild.cloneNode(true);
  node.dataset.reader = r.name;
  node.querySelector(".reader-name").textContent = r.name;
  let state = READER_TEXT[r.status] || r.status || "";
  if (r.status === "error" && r.error) state += ` — ${r.error.message_th || ""} (${r.error.code})`;
  node.querySelector(".reader-state").textContent = state;
  const card = r.card;
  if (card && r.present) {
    node.querySelector(".card").hidden = false;
    node.querySelector(".cid").textContent = maskCitizenId(card.citizen_id);
    node.querySelector(".name-th").textContent = card.name_th.full;
    node.querySelector(".name-en").textContent = card.name_en.full;
    node.querySelector(".birth").textContent = beDate(card.birth_date);
    node.querySelector(".expiry").textContent = beDate(card.expiry_date);
    const img = node.querySelector(".photo");
    if (card.photo && card.photo.base64) {
      img.src = "data:image/jpeg;base64," + card.photo.base64;
      img.hidden = false;
    }
  }
  if (demo) {
    const actions = node.querySelector(".demo-actions");
    actions.hidden = false;
    actions.querySelector(".demo-insert").onclick = () => demoCall("POST", r.name);
    actions.querySelector(".demo-remove").onclick = () => demoCall("DELETE", r.name);
  }
  return node;
}

function render() {
  const list = Object.values(agent.readers);
  $("no-readers").hidden = list.length > 0;
  $("readers").replaceChildren(...list.map(renderReader));
}

async function demoCall(method, reader) {
  const init = { method, headers: { "Content-Type": "application/json" } };
  let path = "/v1/demo/card";
  if (method === "POST") init.body = JSON.stringify({ reader, variant: 0 });
  else path += "?reader=" + encodeURIComponent(reader);
  try { await agent.request(path, init); } catch (err) { console.warn(err); }
}

const REASON_TEXT = {
  origin_not_allowed: "ไม่อยู่ในรายการที่อนุญาต · not on the allowed list",
  lan_key_invalid: "รหัสไม่ถูกต้อง · wrong or missing key",
  lan_client_not_allowed: "เครื่องไม่อยู่ในรายการ · address not listed",
  rate_limited: "เรียกถี่เกินไป · too many requests",
  not_found: "เรียกคำสั่งที่ไม่เปิดให้ใช้ · a route not offered on the LAN",
};

function renderRefusal(r) {
  const li = document.createElement("li");
  const what = r.kind === "origin" ? "หน้าเว็บ · page" : "เครื่องในเครือข่าย · LAN";
  li.textContent = `${what} ${r.source} — ${REASON_TEXT[r.reason] || r.reason} ` +
    `(${r.count}×, ${r.last})`;
  if (r.kind === "origin" && r.reason === "origin_not_allowed") {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "allow-origin";
    button.textContent = "อนุญาตหน้านี้ · Allow this page";
    button.onclick = () => allowOrigin(r.source);
    li.append(" ", button);
  }
  return li;
}

async function loadRefusals() {
  try {
    const status = await agent.status();
    const recent = status.refusals ? status.refusals.recent : [];
    $("refused").replaceChildren(...recent.map(renderRefusal));
    const lan = status.lan || {};
    $("lan").hidden = !lan.enabled;
    if (lan.enabled) {
      const refused = Object.entries(lan.refused || {}).map(([k, v]) => `${k} ${v}`).join(", ");
      $("lan").textContent = `LAN: ${(lan.listening || []).join(", ") || "ไม่ได้เปิด · not listening"}` +
        (lan.problems && lan.problems.length ? ` — ${lan.problems.join("; ")}` : "") +
        (refused ? ` — ปฏิเสธ · refused: ${refused}` : "");
    }
    $("refused-section").hidden = recent.length === 0 && !lan.enabled;
  } catch (err) { console.warn(err); }
}

async function allowOrigin(origin) {
  const out = $("refused-result");
  out.hidden = false;
  try {
    await agent.request("/v1/allowed-origins", {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({origin})});
    out.textContent = `อนุญาต ${origin} แล้ว โหลดหน้านั้นใหม่ · ${origin} is allowed; reload that page`;
  } catch (err) {
    out.textContent = err.code === "setting_locked"
      ? `นโยบายของผู้ดูแลระบบกำหนดรายการนี้ แจ้งฝ่ายไอทีให้เพิ่ม ${origin} · The admin policy fixes the list; ask IT to add ${origin}`
      : `${err.message || err}`;
  }
  loadRefusals();
}

// NHSO: a refused token and claims in review, which nothing sends until staff choose.
function renderReview(claim) {
  const box = document.createElement("div");
  box.className = "review";
  box.dataset.claim = claim.id;
  const c = claim.claim || {};
  const when = new Date(c.serviceDateTime).toLocaleString("th-TH", {timeZone: "Asia/Bangkok"});
  const head = document.createElement("p");
  head.textContent = `เคลม ${claim.transactionId} (${maskCitizenId(c.pid)}, ${when}, ` +
    `${c.claimServiceCode}) — ${claim.review ? `${claim.review.reason_th} · ${claim.review.reason}` : ""}`;
  box.append(head);
  const list = document.createElement("ul");
  for (const cand of (claim.review ? claim.review.candidates : [])) {
    const li = document.createElement("li");
    li.textContent = `${cand.claimCode} — ${cand.serviceDateTime || "ไม่ระบุเวลา · no time"} ` +
      `${cand.hcode || ""} ${cand.sourceChannel || ""} `;
    const take = document.createElement("button");
    take.className = "review-take";
    take.textContent = `ใช้รหัสนี้ · Take ${cand.claimCode}`;
    take.onclick = () => review(claim.id, {action: "take", claimCode: cand.claimCode});
    li.append(take);
    list.append(li);
  }
  const resend = document.createElement("button");
  resend.className = "review-resend";
  resend.textContent = "ไม่ใช่รายการของเรา ส่งใหม่ · None is ours: send again";
  resend.onclick = () => review(claim.id, {action: "resend"});
  box.append(list, resend);
  return box;
}

async function review(id, choice) {
  const out = $("review-result");
  out.hidden = false;
  try {
    await agent.request(`/v1/claims/${encodeURIComponent(id)}/review`, {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(choice)});
    out.textContent = "บันทึกการเลือกแล้ว · Choice recorded";
  } catch (err) {
    out.textContent = `${err.message || err}`;
  }
  loadNhso();
}

async function loadNhso() {
  try {
    const status = await agent.status();
    const nhso = status.nhso || {};
    if (!nhso.available) return;
    const token = nhso.token || {};
    const refused = $("token-refused");
    refused.hidden = token.state !== "refused";
    if (!refused.hidden) {
      refused.textContent = `สปสช. ไม่ยอมรับ Token ตั้งแต่ ${token.since} · NHSO refuses the ` +
        `token since ${token.since}: ${token.message}. ${token.action_th} · ${token.action_en}`;
    }
    const answer = await agent.request("/v1/claims?status=needs_review");
    const claims = (answer && answer.claims) || [];
    $("review-list").replaceChildren(...claims.map(renderReview));
    $("nhso-section").hidden = refused.hidden && claims.length === 0;
  } catch (err) { console.warn(err); }
}

agent.on("claim.needs_review", loadNhso);
agent.on("claim.sent", loadNhso);
agent.on("claim.queued", loadNhso);
agent.on("nhso.token", loadNhso);
agent.on("snapshot", loadNhso);

agent.on("access.refused", loadRefusals);
agent.on("snapshot", loadRefusals);

agent.on("state", (state) => {
  const el = $("connection");
  el.textContent = STATE_TEXT[state] || state;
  el.className = "badge state-" + state;
});
agent.on("snapshot", (ev) => {
  demo = ev.backend === "demo";
  $("version").textContent = `v${ev.agent.version}`;
  const badge = $("backend");
  badge.hidden = !demo;
  badge.textContent = "โหมดสาธิต · Demo mode";
  badge.classList.toggle("demo", demo);
  const pcsc = $("pcsc");
  pcsc.hidden = ev.pcsc.state !== "unavailable";
  pcsc.textContent = "บริการสมาร์ทการ์ด (PC/SC) ไม่ทำงาน · The smart card service (PC/SC) is not running";
  render();
});
agent.on("pcsc.*", (ev) => { $("pcsc").hidden = ev.type !== "pcsc.unavailable"; });
for (const type of ["reader.added", "reader.removed", "card.inserted", "card.read",
  "card.photo", "card.removed", "card.error"]) {
  agent.on(type, render);
}
agent.on("unreachable", (why) => {
  $("connection").textContent = `${why.th} · ${why.en}`;
});
agent.connect();
window.thaiCardAgent = agent;   // for support staff poking around in DevTools
