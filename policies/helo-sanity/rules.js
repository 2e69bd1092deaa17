// The HELO/EHLO sanity decision in plain JavaScript (no WIT imports), so it
// runs under node for the unit tests (test/rules.test.js) and inside the
// component (policy.js) alike.

/** Parses an IPv4 address into 4 numbers, or null. */
function parseIPv4(text) {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const bytes = [];
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return null;
    bytes.push(Number(part));
  }
  return bytes;
}

/** Parses an IPv4 or IPv6 address into 16 bytes (IPv4 mapped), or null. */
export function parseIP(text) {
  const v4 = parseIPv4(text);
  if (v4) return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...v4];
  if (!/^[0-9a-fA-F:.]+$/.test(text) || !text.includes(":")) return null;
  let groups = [];
  let tail = text;
  // A trailing dotted quad fills the last two groups.
  const lastColon = text.lastIndexOf(":");
  if (text.slice(lastColon + 1).includes(".")) {
    const quad = parseIPv4(text.slice(lastColon + 1));
    if (!quad) return null;
    tail = text.slice(0, lastColon + 1) + "0:0";
    const bytes = parseIP(tail);
    if (!bytes) return null;
    bytes.splice(12, 4, ...quad);
    return bytes;
  }
  const halves = tail.split("::");
  if (halves.length > 2) return null;
  const split = (half) => (half === "" ? [] : half.split(":"));
  const head = split(halves[0]);
  const rest = halves.length === 2 ? split(halves[1]) : [];
  for (const group of [...head, ...rest]) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return null;
  }
  const missing = 8 - head.length - rest.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  groups = [...head, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...rest];
  const bytes = [];
  for (const group of groups) {
    const value = parseInt(group, 16);
    bytes.push(value >> 8, value & 0xff);
  }
  return bytes;
}

/** Parses "ADDR" or "ADDR/PREFIX" into {bytes, prefix} (prefix over 128 bits), or null. */
export function parseNetwork(text) {
  const [address, prefixText, extra] = text.trim().split("/");
  if (extra !== undefined) return null;
  const bytes = parseIP(address);
  if (!bytes) return null;
  const isV4 = parseIPv4(address) !== null;
  const max = isV4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== undefined) {
    if (!/^[0-9]{1,3}$/.test(prefixText) || Number(prefixText) > max) return null;
    prefix = Number(prefixText);
  }
  return { bytes, prefix: isV4 ? prefix + 96 : prefix };
}

/** True when the 16 address bytes lie in the network. */
export function inNetwork(network, bytes) {
  let bits = network.prefix;
  for (let i = 0; i < 16 && bits > 0; i++) {
    const take = Math.min(bits, 8);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((network.bytes[i] & mask) !== (bytes[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

function sameAddress(a, b) {
  return a !== null && b !== null && a.every((byte, i) => byte === b[i]);
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Default settings; every key is also a `[policy.config]` key. */
export const DEFAULTS = {
  reject_localhost: true,
  reject_foreign_ip: true,
  reject_own_hostname: true,
  require_fqdn: true,
  internal_networks: null, // null: the server's own networks
  own_names: [],
  reject_code: 550,
  reject_text: "",
};

/**
 * Reads the settings through `get(key)` (returns {kind, value} or null) and
 * returns {settings, errors}; each error names its key.
 */
export function parseConfig(get) {
  const settings = { ...DEFAULTS, own_names: [] };
  const errors = [];
  for (const key of ["reject_localhost", "reject_foreign_ip", "reject_own_hostname", "require_fqdn"]) {
    const entry = get(key);
    if (entry === null) continue;
    if (entry.kind === "boolean") settings[key] = entry.value;
    else errors.push(`${key}: must be true or false`);
  }
  const networks = get("internal_networks");
  if (networks !== null) {
    if (networks.kind !== "text-list") {
      errors.push("internal_networks: must be a list of networks");
    } else {
      settings.internal_networks = [];
      for (const text of networks.value) {
        const network = parseNetwork(text);
        if (network) settings.internal_networks.push(network);
        else errors.push(`internal_networks: "${text}" is not an address or CIDR network`);
      }
    }
  }
  const names = get("own_names");
  if (names !== null) {
    if (names.kind !== "text-list") errors.push("own_names: must be a list of host names");
    else settings.own_names = names.value.map(normalizeName);
  }
  const code = get("reject_code");
  if (code !== null) {
    if (code.kind === "integer" && code.value >= 550 && code.value <= 559) settings.reject_code = code.value;
    else errors.push("reject_code: must be an integer from 550 to 559");
  }
  const text = get("reject_text");
  if (text !== null) {
    if (text.kind !== "text" || !/^[\x20-\x7e]{1,300}$/.test(text.value)) {
      errors.push("reject_text: must be 1 to 300 printable ASCII characters");
    } else {
      settings.reject_text = text.value;
    }
  }
  return { settings, errors };
}

function normalizeName(name) {
  return name.trim().toLowerCase().replace(/\.$/, "");
}

/**
 * Judges a HELO/EHLO name. `facts` = {clientIp, hostname, ownNetworks}
 * (ownNetworks: parsed networks used when internal_networks is not set).
 * Returns null to accept, or {code, status, text} to refuse.
 */
export function judge(settings, name, facts) {
  const client = parseIP(facts.clientIp);
  const internalNetworks = settings.internal_networks ?? facts.ownNetworks;
  const internal = client !== null && internalNetworks.some((network) => inNetwork(network, client));
  if (internal) return null;

  const refuse = (status, reason) => ({
    code: settings.reject_code,
    status,
    text: settings.reject_text ? settings.reject_text.replaceAll("{name}", name) : reason,
  });
  const lower = normalizeName(name);

  if (settings.reject_localhost && (lower === "localhost" || lower === "localhost.localdomain" || lower.endsWith(".localhost"))) {
    return refuse("5.7.1", `HELO ${name} refused: you are not localhost`);
  }

  // An address literal, [192.0.2.1] or [IPv6:2001:db8::1], or a bare address.
  const literal = /^\[(?:ipv6:)?([^\]]+)\]$/i.exec(name);
  const addressText = literal ? literal[1] : name;
  const address = parseIP(addressText);
  if (literal || address) {
    if (settings.reject_foreign_ip && !sameAddress(address, client)) {
      return refuse("5.7.1", `HELO ${name} refused: that is not your address`);
    }
    if (literal) return null; // a literal of the client's own address is fine
    if (settings.require_fqdn) {
      return refuse("5.5.2", `HELO ${name} refused: an address must be written as [${name}]`);
    }
    return null;
  }

  const ownNames = [normalizeName(facts.hostname), ...settings.own_names];
  if (settings.reject_own_hostname && ownNames.includes(lower)) {
    return refuse("5.7.1", `HELO ${name} refused: that is my name, not yours`);
  }

  if (settings.require_fqdn) {
    const labels = lower.split(".");
    const valid = lower.length <= 253 && labels.length >= 2 && labels.every((label) => LABEL.test(label)) && !/^[0-9]+$/.test(labels[labels.length - 1]);
    if (!valid) return refuse("5.5.2", `HELO ${name} refused: not a fully qualified host name`);
  }
  return null;
}

/** One line for admins. */
export function summary(settings) {
  const on = [];
  if (settings.reject_localhost) on.push("localhost");
  if (settings.reject_foreign_ip) on.push("foreign IPs");
  if (settings.reject_own_hostname) on.push("our own name");
  if (settings.require_fqdn) on.push("non-FQDN names");
  const who = settings.internal_networks ? `${settings.internal_networks.length} internal networks` : "the server's own networks";
  return `HELO refusals: ${on.length ? on.join(", ") : "none"}; ${who} exempt`;
}
