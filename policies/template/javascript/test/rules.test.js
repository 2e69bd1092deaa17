import assert from "node:assert/strict";
import { test } from "node:test";
import { blockedDomains, refuseSender } from "../rules.js";

test("blocked sender domains", () => {
  const { blocked, errors } = blockedDomains({ tag: "text-list", val: ["Spam.Example"] });
  assert.deepEqual(errors, []);
  assert.notEqual(refuseSender(blocked, "x@spam.example"), null);
  assert.equal(refuseSender(blocked, "x@ham.example"), null);
  assert.equal(refuseSender(blocked, ""), null);
  assert.equal(blockedDomains({ tag: "text", val: "x" }).errors.length, 1);
});
