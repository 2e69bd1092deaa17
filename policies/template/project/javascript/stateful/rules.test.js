import assert from "node:assert/strict";
import { test } from "node:test";
import { blockedDomains, counterKey, recipientLimit, refuseRecipient, refuseSender, DEFAULT_LIMIT } from "../rules.js";

test("blocked sender domains", () => {
  const { blocked, errors } = blockedDomains({ tag: "text-list", val: ["Spam.Example"] });
  assert.deepEqual(errors, []);
  assert.notEqual(refuseSender(blocked, "x@spam.example"), null);
  assert.equal(refuseSender(blocked, "x@ham.example"), null);
  assert.equal(refuseSender(blocked, ""), null);
  assert.equal(blockedDomains({ tag: "text", val: "x" }).errors.length, 1);
});

test("recipients over the limit", () => {
  assert.equal(recipientLimit(null).limit, DEFAULT_LIMIT);
  assert.equal(recipientLimit({ tag: "integer", val: 0 }).errors.length, 1);
  assert.equal(refuseRecipient(2, 2), null);
  assert.notEqual(refuseRecipient(3, 2), null);
  assert.equal(counterKey("192.0.2.1"), "rcpt:192.0.2.1");
});
