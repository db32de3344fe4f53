// Checks a statement's JWS (RS256, compact) in the browser with WebCrypto, against the exchange's
// published statement keys: the key named by the header's kid, the signature over
// "header.payload", and that the payload is this page's participant and period.
(function () {
  "use strict";

  function bytes(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const binary = atob(padded);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) out[i] = binary.charCodeAt(i);
    return out;
  }

  function json(base64url) {
    return JSON.parse(new TextDecoder().decode(bytes(base64url)));
  }

  async function check(box, say) {
    say(box.dataset.checking, "");
    const [jwsResponse, keysResponse] = await Promise.all([
      fetch(box.dataset.jwsUrl, { credentials: "same-origin" }),
      fetch(box.dataset.keysUrl),
    ]);
    if (!jwsResponse.ok || !keysResponse.ok) throw new Error(`HTTP ${jwsResponse.status}/${keysResponse.status}`);
    const compact = (await jwsResponse.text()).trim();
    const parts = compact.split(".");
    if (parts.length !== 3) return say(box.dataset.invalid, "invalid");
    const header = json(parts[0]);
    const key = (await keysResponse.json()).keys.find((candidate) => candidate.kid === header.kid);
    if (header.alg !== "RS256" || key === undefined) return say(box.dataset.invalid, "invalid");
    const algorithm = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    const publicKey = await crypto.subtle.importKey("jwk", { kty: key.kty, n: key.n, e: key.e }, algorithm, false, ["verify"]);
    const signed = new TextEncoder().encode(`${parts[0]}.${parts[1]}`);
    const valid = await crypto.subtle.verify(algorithm, publicKey, bytes(parts[2]), signed);
    const payload = valid ? json(parts[1]) : null;
    if (!valid || payload.partner !== box.dataset.participant || payload.period.name !== box.dataset.period) {
      return say(box.dataset.invalid, "invalid");
    }
    return say(box.dataset.valid.replace("{kid}", header.kid), "valid");
  }

  function start() {
    const box = document.getElementById("signature");
    if (box === null) return;
    const result = document.getElementById("signature-result");
    const say = (text, state) => {
      result.textContent = text;
      box.dataset.state = state;
    };
    const run = () =>
      check(box, say).catch((error) => say(box.dataset.unavailable.replace("{reason}", error.message), "unavailable"));
    document.getElementById("check-signature").addEventListener("click", run);
    run();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
