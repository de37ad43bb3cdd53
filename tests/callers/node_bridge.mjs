// A Node bridge between a HIS and the agent, as such bridges are written: fetch, then the
// error body's errors[0].defaultMessage (else message) passed to the HIS for staff to read.
// Usage: node node_bridge.mjs <agent base url> <pid> <correlationId>
const [base, pid, correlationId] = process.argv.slice(2);

async function call(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

function staffMessage(answer) {
  if (answer.status === 200) return null;
  const errors = answer.body.errors;
  return errors && errors.length ? errors[0].defaultMessage : answer.body.message;
}

const out = {};
const saved = await call("POST", "/api/nhso-service/confirm-save", {
  pid, claimType: "PG0060001", mobile: "+66 81 234 5678", correlationId, hn: "", hcode: "",
});
out.confirm = { status: saved.status, code: saved.body.claimCode ?? null,
                ok: saved.body.status ?? null, staff: staffMessage(saved),
                message: saved.body.message ?? null };
const bad = await call("POST", "/api/nhso-service/confirm-save", { pid: "123", claimType: "X" });
out.bad = { status: bad.status, staff: staffMessage(bad), message: bad.body.message };
const latest = await call("GET", `/api/nhso-service/latest-authen-code/${pid}`);
out.latest = { status: latest.status, claimType: latest.body.claimType,
               claimCode: latest.body.claimCode, staff: staffMessage(latest) };
const draft = await call("POST", "/api/nhso-service/save-as-draft", {
  pid, claimType: "PG0060001", mobile: "", correlationId });
out.draft = { status: draft.status, staff: staffMessage(draft) };
const probe = await call("GET", `/api/smartcard/probe/${pid}`);
out.probe = { status: probe.status, mainInscl: probe.body.mainInscl,
              coverageStatus: probe.body.coverageStatus };
console.log(JSON.stringify(out));
