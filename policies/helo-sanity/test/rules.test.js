// Unit tests of rules.js: `node --test test/*.test.js` (also run by build.sh).
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULTS, inNetwork, judge, parseConfig, parseIP, parseNetwork } from "../rules.js";

const KINDS = { boolean: "boolean", number: "integer", string: "text", object: "text-list" };
const configured = (table) => parseConfig((key) => (key in table ? { kind: KINDS[typeof table[key]], value: table[key] } : null));

const facts = (clientIp) => ({
  clientIp,
  hostname: "mx.example.com",
  ownNetworks: [parseNetwork("127.0.0.0/8"), parseNetwork("::1/128")],
});

const verdict = (settings, name, client) => {
  const refusal = judge(settings, name, facts(client));
  return refusal === null ? "accept" : `${refusal.code} ${refusal.status}`;
};

test("addresses and networks", () => {
  assert.deepEqual(parseIP("192.0.2.1").slice(10), [0xff, 0xff, 192, 0, 2, 1]);
  assert.equal(parseIP("2001:db8::1")[15], 1);
  assert.deepEqual(parseIP("2001:DB8::1"), parseIP("2001:db8:0:0:0:0:0:1"));
  assert.deepEqual(parseIP("::ffff:192.0.2.1"), parseIP("192.0.2.1"));
  for (const bad of ["256.1.1.1", "1.2.3", "1::2::3", "mx.example.com", "", "1:2:3:4:5:6:7:8:9"]) {
    assert.equal(parseIP(bad), null, bad);
  }
  assert.ok(inNetwork(parseNetwork("10.0.0.0/8"), parseIP("10.9.8.7")));
  assert.ok(!inNetwork(parseNetwork("10.0.0.0/8"), parseIP("11.0.0.1")));
  assert.ok(inNetwork(parseNetwork("2001:db8::/32"), parseIP("2001:db8:ffff::1")));
  assert.equal(parseNetwork("10.0.0.0/33"), null);
});

test("config errors name their keys", () => {
  const { errors } = configured({ require_fqdn: 1, internal_networks: ["nope"], reject_code: 450, reject_text: "" });
  assert.deepEqual(errors.map((e) => e.split(":")[0]), ["require_fqdn", "internal_networks", "reject_code", "reject_text"]);
  assert.deepEqual(configured({}).settings.reject_code, DEFAULTS.reject_code);
});

test("outside clients", () => {
  const { settings } = configured({});
  const outside = "203.0.113.9";
  assert.equal(verdict(settings, "mail.example.net", outside), "accept");
  assert.equal(verdict(settings, "localhost", outside), "550 5.7.1");
  assert.equal(verdict(settings, "LOCALHOST.localdomain", outside), "550 5.7.1");
  assert.equal(verdict(settings, "[203.0.113.9]", outside), "accept");
  assert.equal(verdict(settings, "[192.0.2.1]", outside), "550 5.7.1");
  assert.equal(verdict(settings, "192.0.2.1", outside), "550 5.7.1");
  assert.equal(verdict(settings, "203.0.113.9", outside), "550 5.5.2");
  assert.equal(verdict(settings, "mx.example.com", outside), "550 5.7.1");
  assert.equal(verdict(settings, "MX.Example.com.", outside), "550 5.7.1");
  assert.equal(verdict(settings, "workstation", outside), "550 5.5.2");
  assert.equal(verdict(settings, "bad_name.example.net", outside), "550 5.5.2");
  assert.equal(verdict(settings, "host.123", outside), "550 5.5.2");
  assert.equal(verdict(settings, "[IPv6:2001:db8::5]", "2001:db8:0::5"), "accept");
  assert.equal(verdict(settings, "[IPv6:2001:db8::6]", "2001:db8::5"), "550 5.7.1");
});

test("internal clients are exempt", () => {
  const { settings } = configured({});
  assert.equal(verdict(settings, "localhost", "127.0.0.1"), "accept");
  assert.equal(verdict(settings, "mx.example.com", "::1"), "accept");
  const narrowed = configured({ internal_networks: ["127.0.0.1/32"] }).settings;
  assert.equal(verdict(narrowed, "mx.example.com", "127.0.0.2"), "550 5.7.1");
  assert.equal(verdict(narrowed, "mx.example.com", "127.0.0.1"), "accept");
});

test("switches and custom reply", () => {
  const { settings } = configured({
    require_fqdn: false,
    reject_localhost: false,
    own_names: ["gateway.example.com"],
    reject_code: 554,
    reject_text: "go away, {name}",
  });
  assert.equal(verdict(settings, "workstation", "203.0.113.9"), "accept");
  assert.equal(verdict(settings, "localhost", "203.0.113.9"), "accept");
  assert.equal(verdict(settings, "203.0.113.9", "203.0.113.9"), "accept");
  const refusal = judge(settings, "gateway.example.com", facts("203.0.113.9"));
  assert.deepEqual(refusal, { code: 554, status: "5.7.1", text: "go away, gateway.example.com" });
});
