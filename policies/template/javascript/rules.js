// Your policy's logic, in plain JavaScript so `node --test` tests it.
// This template refuses mail from sender domains listed in the config key
// `blocked_domains`. Replace it with your own rule.

/** Reads `blocked_domains` ({tag, val} from config.get, or null). */
export function blockedDomains(value) {
  if (value === null || value === undefined) return { blocked: new Set(), errors: [] };
  if (value.tag !== "text-list") return { blocked: new Set(), errors: ["blocked_domains: must be a list of domains"] };
  return { blocked: new Set(value.val.map((d) => d.trim().toLowerCase().replace(/\.$/, ""))), errors: [] };
}

/** The reply text when `sender` is refused, else null. */
export function refuseSender(blocked, sender) {
  const at = sender.lastIndexOf("@");
  const domain = sender.slice(at + 1).toLowerCase().replace(/\.$/, "");
  return at >= 0 && blocked.has(domain) ? `mail from ${domain} is not accepted here` : null;
}
