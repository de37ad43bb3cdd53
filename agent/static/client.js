// Thai Card Agent JavaScript client (ES module), served by the agent at /v1/client.js.
//
//   import { ThaiCardAgent } from "http://127.0.0.1:8189/v1/client.js";
//   const agent = new ThaiCardAgent();
//   agent.on("card.read", (ev) => show(ev.card));     // text fields, at once
//   agent.on("card.photo", (ev) => showPhoto(ev.photo)); // base64 JPEG, right after
//   agent.on("card.removed", () => clear());
//   agent.connect();
//   const card = await agent.read({ photo: true });   // or ask once over HTTP
//   img.src = await agent.photoObjectUrl(reader);     // the photo as a blob: URL
//   const done = await agent.confirmVisit(visit);     // the patient's card confirms a visit
//
// Events are the agent's envelopes {v, type, seq, time, reader, ...}; see
// docs/integration.md. Your page's origin must be allowed by the agent's configuration,
// and Chrome/Edge must allow the page to reach this computer ("local network access").

export const DEFAULT_BASE = "http://127.0.0.1:8189";

export class AgentError extends Error {
  constructor(message, { code = "agent_unreachable", status = 0, body = null } = {}) {
    super(message);
    this.name = "AgentError";
    this.code = code;
    this.status = status;
    this.body = body;
  }
}

// Whether the browser lets this page reach the agent: "granted", "prompt", "denied" or
// "unsupported" (browsers without the local network permission).
export async function loopbackPermission() {
  if (!globalThis.navigator || !navigator.permissions) return "unsupported";
  for (const name of ["loopback-network", "local-network-access", "local-network"]) {
    try {
      return (await navigator.permissions.query({ name })).state;
    } catch (_) {
      // this browser does not know that permission name
    }
  }
  return "unsupported";
}

// What to tell the user when the agent cannot be reached, in Thai and English.
export async function explainUnreachable() {
  const state = await loopbackPermission();
  if (state === "denied") {
    return {
      code: "permission_denied",
      th: "เบราว์เซอร์ไม่อนุญาตให้หน้านี้เชื่อมต่อโปรแกรมอ่านบัตร: คลิกไอคอนแม่กุญแจ/การตั้งค่าเว็บไซต์ " +
        "แล้วอนุญาต \"เครือข่ายภายใน\" (Local network access) จากนั้นโหลดหน้าใหม่ " +
        "หรือให้ผู้ดูแลระบบตั้งนโยบาย LocalNetworkAccessAllowedForUrls",
      en: "The browser blocks this page from the card reader agent: open the site settings " +
        "(padlock icon), allow \"Local network access\", then reload; or ask IT to set the " +
        "LocalNetworkAccessAllowedForUrls policy.",
    };
  }
  if (state === "prompt") {
    return {
      code: "permission_prompt",
      th: "กรุณากด \"อนุญาต\" เมื่อเบราว์เซอร์ถามเรื่องการเข้าถึงอุปกรณ์ในเครือข่ายภายใน",
      en: "Please click \"Allow\" when the browser asks about local network access.",
    };
  }
  return {
    code: "agent_not_running",
    th: "ติดต่อโปรแกรมอ่านบัตรไม่ได้ กรุณาตรวจสอบว่าติดตั้งและเปิดโปรแกรม Thai Card Agent แล้ว",
    en: "Cannot reach the card reader agent: check that Thai Card Agent is installed and running.",
  };
}

// A citizen id fit for a screen or a slip: the first and last digits only.
export function maskedCitizenId(cid) {
  if (!cid || cid.length !== 13) return "x".repeat((cid || "").length);
  return `${cid[0]}-xxxx-xxxxx-xx-${cid[12]}`;
}

const CONFIRM_TEXT = {
  th: {
    title: "ยืนยันการเข้ารับบริการด้วยบัตรประชาชน", insert: "กรุณาให้ผู้รับบริการเสียบบัตรประชาชน",
    reading: "กำลังอ่านบัตร…", mismatch: "บัตรนี้ไม่ใช่บัตรของผู้รับบริการรายนี้ กรุณาเสียบบัตรของผู้รับบริการ",
    ready: "บัตรถูกต้อง กรุณาให้ผู้รับบริการกดยืนยัน", confirm: "ยืนยันการรับบริการ",
    sending: "กำลังส่งข้อมูลถึง สปสช.…", confirmed: "ยืนยันแล้ว รหัสยืนยันการเข้ารับบริการ:",
    refused: "สปสช. ไม่รับการยืนยันรายการนี้ ตรวจสอบรายการปิดสิทธิ",
    pending: "บันทึกการยืนยันแล้ว จะส่งถึง สปสช. เมื่อเชื่อมต่อได้",
    failed: "ยืนยันไม่สำเร็จ", cancel: "ยกเลิก", close: "ปิด",
  },
  en: {
    title: "Confirm the visit with the patient's ID card", insert: "Please ask the patient to insert their ID card",
    reading: "Reading the card…", mismatch: "This is not this patient's card: insert the patient's own card",
    ready: "The card matches: the patient may press confirm", confirm: "Confirm this visit",
    sending: "Sending to NHSO…", confirmed: "Confirmed. The visit's code:",
    refused: "NHSO did not accept this confirmation: check the claim",
    pending: "Confirmation saved; it is sent to NHSO when NHSO can be reached",
    failed: "Could not confirm", cancel: "Cancel", close: "Close",
  },
};

export class ThaiCardAgent {
  constructor({
    base = DEFAULT_BASE, photo = true, types = null, readers = null,
    reconnect = true, minDelay = 500, maxDelay = 15000, WebSocketImpl = globalThis.WebSocket,
  } = {}) {
    this.base = base.replace(/\/+$/, "");
    this.filters = { photo, types, readers };
    this.reconnect = reconnect;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.WebSocketImpl = WebSocketImpl;
    this.state = "closed";         // closed | connecting | open
    this.readers = {};             // name -> reader info (+ card) from snapshot and events
    this.lastSeq = 0;
    this._handlers = new Map();
    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._wanted = false;
  }

  // Listen to an event type ("card.read"), a prefix ("card.*"), "*" (everything),
  // or the client's own: "state" (connecting/open/closed), "unreachable".
  // Returns a function that removes the listener.
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  _emit(type, data) {
    const call = (key) => this._handlers.get(key)?.forEach((h) => {
      try { h(data); } catch (err) { console.error(err); }
    });
    call(type);
    const dot = type.indexOf(".");
    if (dot > 0) call(type.slice(0, dot) + ".*");
    if (!["state", "unreachable"].includes(type)) call("*");
  }

  _setState(state) {
    if (this.state !== state) {
      this.state = state;
      this._emit("state", state);
    }
  }

  // -- HTTP --------------------------------------------------------------------------------
  async request(path, init = {}) {
    let resp;
    try {
      resp = await fetch(this.base + path, { cache: "no-store", ...init });
    } catch (err) {
      const why = await explainUnreachable();
      this._emit("unreachable", why);
      throw new AgentError(`${why.en} (${err.message})`, { code: why.code });
    }
    const type = resp.headers.get("Content-Type") || "";
    const body = type.includes("json") ? await resp.json() : await resp.blob();
    if (!resp.ok) {
      throw new AgentError(body?.message_en || body?.message || resp.statusText,
        { code: body?.code || "http_" + resp.status, status: resp.status, body });
    }
    return body;
  }

  status() { return this.request("/v1/status"); }

  async listReaders() { return (await this.request("/v1/readers")).readers; }

  // The card (all fields, raw and parsed). Waits for a read in progress.
  async read({ reader = null, photo = false } = {}) {
    const q = photo ? "?photo=1" : "";
    const path = reader ? `/v1/readers/${encodeURIComponent(reader)}/card${q}` : `/v1/card${q}`;
    return (await this.request(path)).card;
  }

  // The photo's URL, for <img crossorigin="anonymous" src=...>: "crossorigin" makes the
  // browser send your page's Origin, which the agent needs (a plain <img> from another site
  // is refused). Your origin needs the "photo" scope.
  photoUrl(reader) { return `${this.base}/v1/readers/${encodeURIComponent(reader)}/photo`; }

  // The photo as an object URL (blob:) for any <img>, <canvas> or download link; fetched
  // with your page's Origin. Call URL.revokeObjectURL(url) when the card is removed.
  async photoObjectUrl(reader) {
    const blob = await this.request(`/v1/readers/${encodeURIComponent(reader)}/photo`);
    return URL.createObjectURL(blob);
  }

  // -- the patient confirms a visit with their own card ----------------------------------
  // A small dialog in your page: waits for the card, checks its citizen id against the
  // visit's, lets the patient press "confirm", and shows the EP code. ``visit`` is a visit
  // from POST /v1/visits (or its id). Resolves with the agent's answer {claimId, status,
  // claimCode, visit, error}; rejects with AgentError code "cancelled" when staff close the
  // dialog. Your origin needs the scopes claims, card and events (and photo, unless this
  // client was made with photo: false). docs/kiosk.md.
  async confirmVisit(visit, { parent = document.body, lang = "th", wait = 25 } = {}) {
    if (typeof visit === "string") {
      visit = await this.request(`/v1/visits/${encodeURIComponent(visit)}`);
    }
    const pid = visit.claim && visit.claim.pid;
    const text = CONFIRM_TEXT[lang] || CONFIRM_TEXT.th;
    const dialog = document.createElement("dialog");
    dialog.className = "thaicard-confirm";
    dialog.setAttribute("aria-label", text.title);
    Object.assign(dialog.style, { font: "inherit", fontSize: "20px", padding: "24px",
      borderRadius: "12px", minWidth: "320px", maxWidth: "90vw" });
    const title = document.createElement("h2");
    title.textContent = text.title;
    const label = document.createElement("p");
    label.textContent = visit.label || (visit.claim && visit.claim.visitNumber) || "";
    const message = document.createElement("p");
    message.className = "thaicard-confirm-message";
    const code = document.createElement("p");
    code.className = "thaicard-confirm-code";
    Object.assign(code.style, { fontSize: "40px", fontWeight: "700", margin: "8px 0" });
    const confirmButton = document.createElement("button");
    confirmButton.type = "button";
    confirmButton.className = "thaicard-confirm-ok";
    confirmButton.textContent = text.confirm;
    confirmButton.hidden = true;
    const closeButton = document.createElement("button");
    closeButton.type = "button";
    closeButton.className = "thaicard-confirm-close";
    closeButton.textContent = text.cancel;
    for (const b of [confirmButton, closeButton]) {
      Object.assign(b.style, { font: "inherit", minHeight: "48px", padding: "8px 24px",
        marginInlineEnd: "12px" });
    }
    dialog.append(title, label, message, code, confirmButton, closeButton);
    parent.append(dialog);
    dialog.showModal();
    dialog.dataset.state = "waiting";

    const say = (state, words) => { dialog.dataset.state = state; message.textContent = words; };
    const cardNow = () => Object.values(this.readers).find((r) => r.present && r.card);
    const wasConnected = Boolean(this._ws);
    const offs = [];
    let finish;
    const done = new Promise((resolve, reject) => { finish = { resolve, reject }; });
    let answer = null;
    const check = () => {
      if (answer) return;
      const reader = cardNow();
      const anyCard = Object.values(this.readers).some((r) => r.present);
      if (!reader) {
        confirmButton.hidden = true;
        say(anyCard ? "reading" : "waiting", anyCard ? text.reading : text.insert);
      } else if (reader.card.citizen_id !== pid) {
        confirmButton.hidden = true;
        say("mismatch", text.mismatch);
      } else {
        confirmButton.hidden = false;
        say("ready", text.ready);
        confirmButton.focus();
      }
    };
    for (const type of ["snapshot", "card.*"]) offs.push(this.on(type, check));
    const cleanup = () => {
      offs.forEach((off) => off());
      if (!wasConnected) this.close();
    };
    confirmButton.onclick = async () => {
      confirmButton.hidden = true;
      say("sending", text.sending);
      try {
        answer = await this.request(`/v1/visits/${encodeURIComponent(visit.id)}/confirm?wait=${wait}`,
          { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
      } catch (err) {
        say("error", `${err.body?.message_th || text.failed} (${err.code})`);
        check();
        return;
      }
      code.textContent = answer.claimCode || "";
      const fine = answer.status === "sent";
      say(fine ? "confirmed" : "staff",
        fine ? text.confirmed : answer.status === "failed" ? text.refused : text.pending);
      closeButton.textContent = text.close;
      closeButton.focus();
    };
    closeButton.onclick = () => dialog.close();
    dialog.addEventListener("close", () => {
      cleanup();
      dialog.remove();
      if (answer) finish.resolve(answer);
      else finish.reject(new AgentError("closed before the visit was confirmed", { code: "cancelled" }));
    });
    this.connect();
    check();
    return done;
  }

  // -- events --------------------------------------------------------------------------------
  connect() {
    this._wanted = true;
    if (this._ws) return this;
    this._open();
    return this;
  }

  close() {
    this._wanted = false;
    clearTimeout(this._timer);
    if (this._ws) this._ws.close(1000, "client closing");
    this._ws = null;
    this._setState("closed");
  }

  // Change filters on the open connection (and for later reconnects).
  subscribe({ types, readers, photo } = {}) {
    if (types !== undefined) this.filters.types = types;
    if (readers !== undefined) this.filters.readers = readers;
    if (photo !== undefined) this.filters.photo = photo;
    this._send({ type: "subscribe", ...this._filterMessage() });
  }

  ping(id = Date.now()) { this._send({ type: "ping", id }); }

  _filterMessage() {
    const out = { photo: this.filters.photo };
    if (this.filters.types) out.types = this.filters.types;
    if (this.filters.readers) out.readers = this.filters.readers;
    return out;
  }

  _send(message) {
    if (this._ws && this._ws.readyState === 1) this._ws.send(JSON.stringify(message));
  }

  _open() {
    const q = new URLSearchParams({ photo: this.filters.photo ? "1" : "0" });
    if (this.filters.types) q.set("types", this.filters.types.join(","));
    if (this.filters.readers) q.set("readers", this.filters.readers.join(","));
    const url = this.base.replace(/^http/, "ws") + "/v1/events?" + q;
    this._setState("connecting");
    let ws;
    try {
      ws = new this.WebSocketImpl(url);
    } catch (err) {
      this._retry();
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this._attempt = 0;
      this._setState("open");
    };
    ws.onmessage = (msg) => {
      let ev;
      try { ev = JSON.parse(msg.data); } catch (_) { return; }
      this._track(ev);
      this._emit(ev.type, ev);
    };
    ws.onclose = async () => {
      if (this._ws !== ws) return;
      this._ws = null;
      this._setState("closed");
      if (!opened) this._emit("unreachable", await explainUnreachable());
      this._retry();
    };
  }

  _retry() {
    if (!this._wanted || !this.reconnect) return;
    // Exponential backoff with jitter, so a room full of pages does not reconnect at once.
    const delay = Math.min(this.maxDelay, this.minDelay * 2 ** this._attempt);
    this._attempt += 1;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._wanted && this._open(),
      delay / 2 + Math.random() * delay / 2);
  }

  _track(ev) {
    if (typeof ev.seq === "number") this.lastSeq = ev.seq;
    if (ev.type === "snapshot") {
      this.readers = {};
      for (const r of ev.readers) this.readers[r.name] = r;
      return;
    }
    const name = ev.reader;
    if (!name) return;
    const r = this.readers[name] || (this.readers[name] = { name, present: false, card: null });
    switch (ev.type) {
      case "reader.added": r.status = r.status || "empty"; break;
      case "reader.removed": delete this.readers[name]; break;
      case "card.inserted": Object.assign(r, { present: true, status: "reading", card: null }); break;
      case "card.read": Object.assign(r, { present: true, status: "ready", card: ev.card }); break;
      case "card.photo":
        if (r.card && ev.photo) r.card.photo = { size: ev.size, format: ev.format, base64: ev.photo };
        break;
      case "card.removed": Object.assign(r, { present: false, status: "empty", card: null }); break;
      case "card.error": Object.assign(r, { status: "error", error: ev }); break;
      default: break;
    }
  }
}

export default ThaiCardAgent;
