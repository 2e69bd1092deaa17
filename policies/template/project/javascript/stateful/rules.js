// Your policy's logic, in plain JavaScript so `node --test` tests it.
// This template refuses mail from sender domains listed in the config key
// `blocked_domains`, and defers a client's recipients over
// `max_recipients_per_hour` (counted in relaygate's state store by policy.js).
// Replace it with your own rules.

/** How long a client's recipient count lasts, in milliseconds: one hour. */
export const WINDOW_MS = 3600000;

/** `max_recipients_per_hour` when the config does not set it. */
export const DEFAULT_LIMIT = 100;

/** Reads `blocked_domains` ({tag, val} from config.get, or null). */
export function blockedDomains(value) {
  if (value === null || value === undefined) return { blocked: new Set(), errors: [] };
  if (value.tag !== "text-list") return { blocked: new Set(), errors: ["blocked_domains: must be a list of domains"] };
  return { blocked: new Set(value.val.map((d) => d.trim().toLowerCase().replace(/\.$/, ""))), errors: [] };
}

/** Reads `max_recipients_per_hour` ({tag, val} from config.get, or null). */
export function recipientLimit(value) {
  if (value === null || value === undefined) return { limit: DEFAULT_LIMIT, errors: [] };
  if (value.tag !== "integer" || value.val < 1) {
    return { limit: DEFAULT_LIMIT, errors: ["max_recipients_per_hour: must be a number of at least 1"] };
  }
  return { limit: Number(value.val), errors: [] };
}

/** The reply text when `sender` is refused, else null. */
export function refuseSender(blocked, sender) {
  const at = sender.lastIndexOf("@");
  const domain = sender.slice(at + 1).toLowerCase().replace(/\.$/, "");
  return at >= 0 && blocked.has(domain) ? `mail from ${domain} is not accepted here` : null;
}

/** The state key counting the recipients of `clientIp` (relaygate prefixes it with the policy's name). */
export const counterKey = (clientIp) => `rcpt:${clientIp}`;

/** The reply text when a client's `count`-th recipient this hour is over `limit`, else null. */
export function refuseRecipient(count, limit) {
  return count > limit ? `more than ${limit} recipients this hour, try again later` : null;
}
