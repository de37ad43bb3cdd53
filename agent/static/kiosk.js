// The self-service kiosk (/kiosk): the patient's own card confirms today's visits.
//
// idle -> reading -> patient (first name, photo, visits; one tap per visit) -> each
// confirmed visit shows its EP code (printable) -> "please remove your card" -> idle.
// A card pulled at any step returns to idle and nothing unconfirmed is sent; inactivity
// clears the screen. Never shown: the address, the full citizen id. Nothing is kept
// after the card leaves: the card is only in this page's memory while it is in.
import { ThaiCardAgent, maskedCitizenId } from "/v1/client.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const IDLE_SECONDS = Math.max(5, Number(params.get("idle")) || 60);
const CONFIRM_WAIT = 25;            // seconds the agent may wait for NHSO's EP code
if (params.get("paper") === "80") document.documentElement.classList.add("paper-80");

const TEXT = {
  th: {
    title: "ยืนยันการเข้ารับบริการ", lang: "English",
    insert: "กรุณาเสียบบัตรประชาชน", insertHint: "เสียบบัตรโดยหันชิปทองขึ้นด้านบน",
    reading: "กำลังอ่านบัตร… กรุณาอย่าดึงบัตรออก",
    hello: (name) => `สวัสดี คุณ${name}`,
    visitsTitle: "รายการเข้ารับบริการวันนี้ที่รอการยืนยัน แตะปุ่มเพื่อยืนยัน",
    confirm: "ยืนยันการรับบริการ", sending: "กำลังส่งข้อมูลถึง สปสช. กรุณารอสักครู่…",
    codeTitle: "รหัสยืนยันการเข้ารับบริการ", print: "พิมพ์ใบยืนยัน",
    removeCard: "เรียบร้อยแล้ว กรุณาดึงบัตรออก",
    removeWhenDone: "ดึงบัตรออกได้เลย ข้อมูลของท่านจะไม่แสดงค้างบนหน้าจอ",
    none: "ไม่พบรายการรับบริการที่รอยืนยันวันนี้ กรุณาติดต่อเจ้าหน้าที่ที่ห้องบัตรหรือจุดชำระเงิน",
    sourceDown: "ระบบของโรงพยาบาลไม่ตอบสนองในขณะนี้ กรุณาติดต่อเจ้าหน้าที่",
    refused: "สปสช. ไม่รับการยืนยันรายการนี้ กรุณาติดต่อเจ้าหน้าที่",
    review: "รายการนี้ต้องให้เจ้าหน้าที่ตรวจสอบ กรุณาติดต่อเจ้าหน้าที่",
    pending: "บันทึกการยืนยันแล้ว ระบบจะส่งถึง สปสช. เมื่อเชื่อมต่อได้ หากต้องการรหัสยืนยันกรุณาติดต่อเจ้าหน้าที่",
    readFailed: "อ่านบัตรไม่ได้ กรุณาดึงบัตรออกแล้วเสียบใหม่",
    notYours: "บัตรในเครื่องไม่ใช่บัตรของผู้รับบริการรายนี้ กรุณาติดต่อเจ้าหน้าที่",
    connected: "", disconnected: "ขาดการเชื่อมต่อกับโปรแกรมอ่านบัตร กรุณาติดต่อเจ้าหน้าที่",
    slipTitle: "ใบยืนยันการเข้ารับบริการ", slipCode: "รหัสยืนยัน (Authen Code)",
  },
  en: {
    title: "Confirm your visit", lang: "ภาษาไทย",
    insert: "Please insert your ID card", insertHint: "Chip facing up, into the reader",
    reading: "Reading your card… please leave it in",
    hello: (name) => `Hello, ${name}`,
    visitsTitle: "Today's visits waiting for your confirmation: tap to confirm",
    confirm: "Confirm this visit", sending: "Sending to NHSO, please wait…",
    codeTitle: "Your confirmation code", print: "Print a slip",
    removeCard: "All done: please remove your card",
    removeWhenDone: "You may remove your card: nothing stays on the screen",
    none: "No visit is waiting for your confirmation today: please ask staff at the registration or cashier counter",
    sourceDown: "The hospital system is not answering right now: please ask staff",
    refused: "NHSO did not accept this confirmation: please ask staff",
    review: "This visit needs a staff check: please ask staff",
    pending: "Your confirmation is saved and will be sent to NHSO when it can be reached: ask staff if you need the code",
    readFailed: "The card could not be read: please remove it and insert it again",
    notYours: "The card in the reader is not this patient's card: please ask staff",
    connected: "", disconnected: "The card reader agent is not reachable: please ask staff",
    slipTitle: "Visit confirmation", slipCode: "Authen Code",
  },
};

let lang = "th";
const t = (key, ...args) => {
  const value = TEXT[lang][key];
  return typeof value === "function" ? value(...args) : value;
};

// Everything about the patient now at the kiosk; replaced (never merged) on each card.
let session = null;
let generation = 0;                 // bumped on every insert and removal: late answers drop
let idleTimer = null;

const agent = new ThaiCardAgent({ base: location.origin, photo: true });

function setState(state, reason = "") {
  document.body.dataset.state = state;
  document.body.dataset.reason = reason;
  for (const screen of document.querySelectorAll(".screen")) {
    screen.hidden = screen.id !== { idle: "idle", reading: "reading", visits: "patient",
      confirming: "patient", done: "patient", staff: "staff", removing: "removing",
      starting: "idle" }[state];
  }
  if (state === "staff") $("staff-text").textContent = t(reason);
  $("working").hidden = state !== "confirming";
  $("remove").hidden = state !== "done";
  if (session && ["visits", "confirming", "done"].includes(state)) renderPatient();
  const first = document.querySelector(".screen:not([hidden]) button:not([disabled])");
  if (first) first.focus();
  touch();
}

function touch() {
  clearTimeout(idleTimer);
  const state = document.body.dataset.state;
  if (["idle", "starting", "reading", "confirming"].includes(state)) return;
  idleTimer = setTimeout(() => {
    // Walked away: clear the screen. A card still in must leave before the next patient.
    if (cardPresent()) { clear(); setState("removing"); } else nextPatient();
  }, IDLE_SECONDS * 1000);
}

// The screen for the next patient: nothing of the last one, and Thai again (an English
// choice was that patient's).
function nextPatient() {
  clear();
  if (lang !== "th") { lang = "th"; applyLanguage(); }
  setState("idle");
}

function cardPresent() { return Object.values(agent.readers).some((r) => r.present); }

function clear() {
  generation += 1;
  session = null;
  const photo = $("photo");
  photo.removeAttribute("src");
  photo.hidden = true;
  $("hello").textContent = "";
  $("masked-id").textContent = "";
  $("visits").replaceChildren();
  $("slip").replaceChildren();
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.body.dataset.lang = lang;
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  $("lang").textContent = t("lang");
  if (session) renderPatient();
  if (document.body.dataset.state === "staff") $("staff-text").textContent = t(document.body.dataset.reason);
  $("connection").textContent = agent.state === "closed" ? t("disconnected") : t("connected");
}

function firstName(card) {
  const th = card.name_th && card.name_th.first;
  const en = card.name_en && card.name_en.first;
  return (lang === "en" ? en || th : th || en) || "";
}

function renderPatient() {
  $("hello").textContent = t("hello", firstName(session.card));
  $("masked-id").textContent = maskedCitizenId(session.card.citizen_id);
  const list = session.visits.map((visit) => {
    const node = $("visit-template").content.firstElementChild.cloneNode(true);
    node.dataset.visit = visit.id;
    node.dataset.testid = "visit";
    node.querySelector(".label").textContent = visit.label || visit.claim.visitNumber;
    const button = node.querySelector(".confirm");
    button.textContent = t("confirm");
    button.onclick = () => confirm(visit);
    const outcome = session.outcomes[visit.id];
    button.hidden = Boolean(outcome);
    button.disabled = document.body.dataset.state === "confirming";
    if (outcome) {
      const box = node.querySelector(".outcome");
      box.hidden = false;
      box.dataset.status = outcome.status;
      box.querySelector(".code-title").textContent = outcome.claimCode ? t("codeTitle") : "";
      box.querySelector(".code").textContent = outcome.claimCode || "";
      box.querySelector(".outcome-text").textContent = outcome.claimCode ? "" : t(outcomeReason(outcome));
      const print = box.querySelector(".print");
      print.hidden = !outcome.claimCode;
      print.textContent = t("print");
      print.onclick = () => printSlip(visit, outcome);
    }
    return node;
  });
  $("visits").replaceChildren(...list);
}

function outcomeReason(outcome) {
  if (outcome.status === "failed") return "refused";
  if (outcome.status === "needs_review") return "review";
  return "pending";
}

async function onCardRead(ev) {
  clear();
  const mine = generation;
  session = { reader: ev.reader, card: ev.card, visits: [], outcomes: {} };
  let visits;
  const outcomes = {};
  try {
    const q = new URLSearchParams({ pid: ev.card.citizen_id, date: "today",
      status: "waiting,confirmed" });
    visits = (await agent.request("/v1/visits?" + q)).visits;
    // Confirmed earlier today (a lost slip, a second look): their codes again.
    for (const visit of visits.filter((v) => v.status === "confirmed" && v.claimId)) {
      const claim = await agent.request(`/v1/claims/${encodeURIComponent(visit.claimId)}`);
      outcomes[visit.id] = { claimId: claim.id, status: claim.status,
        claimCode: claim.authenCode, error: claim.error };
    }
  } catch (err) {
    if (mine === generation) toStaff("sourceDown");
    return;
  }
  if (mine !== generation) return;          // the card left while we asked
  if (!visits.length) { toStaff("none"); return; }
  session.visits = visits;
  session.outcomes = outcomes;
  const photo = agent.readers[ev.reader]?.card?.photo;
  if (photo && photo.base64) showPhoto(photo.base64);
  settle();
}

// Nothing to confirm with this card: its name and photo (still arriving) are not kept.
function toStaff(reason) {
  clear();
  setState("staff", reason);
}

// The next state once the visits' outcomes are known: more to confirm, all done, or staff.
function settle() {
  const open = session.visits.filter((v) => !session.outcomes[v.id]);
  const trouble = Object.values(session.outcomes).find((o) => !o.claimCode);
  if (open.length) setState("visits");
  else if (trouble) setState("staff", outcomeReason(trouble));
  else setState("done");
}

function showPhoto(base64) {
  if (!session) return;
  const img = $("photo");
  img.src = "data:image/jpeg;base64," + base64;
  img.hidden = false;
}

async function confirm(visit) {
  if (!session || document.body.dataset.state === "confirming") return;
  const mine = generation;
  setState("confirming");
  let outcome;
  try {
    outcome = await agent.request(`/v1/visits/${encodeURIComponent(visit.id)}/confirm?wait=${CONFIRM_WAIT}`,
      { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  } catch (err) {
    if (mine !== generation) return;
    if (["no_card", "card_removed"].includes(err.code)) return;   // the removal event clears
    // Staff must look at the visit itself (closed, or its claim already made another way),
    // at the card, or at the agent and the HIS.
    const reason = { visit_card_mismatch: "notYours", visit_closed: "review",
      claim_same_visit: "review", claim_conflict: "review" }[err.code] || "sourceDown";
    setState("staff", reason);
    return;
  }
  if (mine !== generation) return;
  session.outcomes[visit.id] = outcome;
  settle();
}

function printSlip(visit, outcome) {
  const now = new Date();
  const lines = [
    ["h2", t("slipTitle")],
    ["p", visit.label || visit.claim.visitNumber],
    ["p", t("slipCode")],
    ["p", outcome.claimCode, "slip-code"],
    ["p", maskedCitizenId(session.card.citizen_id)],
    ["p", now.toLocaleString(lang === "th" ? "th-TH" : "en-GB", { timeZone: "Asia/Bangkok" })],
  ];
  $("slip").replaceChildren(...lines.map(([tag, text, cls]) => {
    const node = document.createElement(tag);
    node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }));
  window.print();
  touch();
}

agent.on("snapshot", (ev) => {
  const withCard = ev.readers.find((r) => r.present);
  if (!withCard) { clear(); setState("idle"); return; }
  if (withCard.card && !session) onCardRead({ reader: withCard.name, card: withCard.card });
  else if (!withCard.card) setState("reading");
});
agent.on("card.inserted", () => { clear(); setState("reading"); });
agent.on("card.read", (ev) => onCardRead(ev));
agent.on("card.photo", (ev) => {
  if (session && ev.reader === session.reader && ev.photo) showPhoto(ev.photo);
});
agent.on("card.removed", () => {
  if (cardPresent()) return;                // another reader still holds a card
  nextPatient();
});
agent.on("card.error", (ev) => {
  if (ev.code === "card_removed") return;
  clear();
  setState("staff", "readFailed");
});
agent.on("state", () => applyLanguage());

$("lang").onclick = () => { lang = lang === "th" ? "en" : "th"; applyLanguage(); touch(); };
for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, touch);
applyLanguage();
setState("idle");
agent.connect();
