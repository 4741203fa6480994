// Verify a Rail event webhook in Node.js with the built-in crypto module (no package).
//
// Rail signs each event POST twice (Standard Webhooks): "v1", an HMAC-SHA256 with your
// client's own secret ("whsec_...", printed by `rail certs issue`), and "v1a", an
// ed25519 signature with Rail's public key ("whpk_...", GET /api/v1/webhook-key). Either
// key works here. (The `standardwebhooks` npm package checks "v1" too:
// new Webhook(secret).verify(body, headers).)
//
// Command line (what Rail's tests run): node verify.js KEY HEADERS.json BODY
// prints "ok <type> <id>" and exits 0 if the request verifies, else exits 1.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");

const TOLERANCE_SECONDS = 300;
// DER prefix of an ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it.
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

// Returns the event if Rail signed these exact body bytes (a Buffer: the raw body,
// before JSON parsing) less than five minutes ago; throws otherwise.
function verifyRailEvent(key, headers, body) {
  const h = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const id = h["webhook-id"];
  const timestamp = h["webhook-timestamp"];
  const signatures = h["webhook-signature"];
  if (!id || !timestamp || !signatures) throw new Error("missing webhook headers");
  if (!/^[0-9]+$/.test(timestamp)) throw new Error("invalid webhook-timestamp");
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE_SECONDS) {
    throw new Error("webhook-timestamp too old or too new");
  }
  const signed = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  for (const entry of signatures.split(" ")) {
    const [version, encoded] = entry.split(",", 2);
    if (!encoded) continue;
    const signature = Buffer.from(encoded, "base64");
    if (version === "v1" && key.startsWith("whsec_")) {
      const secret = Buffer.from(key.slice("whsec_".length), "base64");
      const expected = crypto.createHmac("sha256", secret).update(signed).digest();
      if (expected.length === signature.length && crypto.timingSafeEqual(expected, signature)) {
        return JSON.parse(body.toString("utf8"));
      }
    }
    if (version === "v1a" && key.startsWith("whpk_")) {
      const raw = Buffer.from(key.slice("whpk_".length), "base64");
      const publicKey = crypto.createPublicKey({
        key: Buffer.concat([ED25519_SPKI_PREFIX, raw]),
        format: "der",
        type: "spki",
      });
      if (crypto.verify(null, signed, publicKey, signature)) {
        return JSON.parse(body.toString("utf8"));
      }
    }
  }
  throw new Error("no matching signature");
}

module.exports = { verifyRailEvent };

if (require.main === module) {
  const [key, headersFile, bodyFile] = process.argv.slice(2);
  const headers = JSON.parse(fs.readFileSync(headersFile, "utf8"));
  const body = fs.readFileSync(bodyFile);
  try {
    const event = verifyRailEvent(key, headers, body);
    console.log(`ok ${event.type} ${event.id}`);
  } catch (error) {
    console.error(`rejected: ${error.message}`);
    process.exit(1);
  }
}
