// relaygate policy `helo-sanity`: refuses implausible HELO/EHLO names from
// clients outside the internal networks. The decision is in rules.js; this
// file binds it to the WIT world relaygate:policy/policy (componentize-qjs).
import config from "relaygate:policy/config@0.1.1";
import log from "relaygate:policy/log@0.1.1";
import server from "relaygate:policy/server@0.1.1";
import { judge, parseConfig, parseNetwork, summary } from "./rules.js";

const ACCEPT = { action: "accept", reply: null };

// One instance serves one session; the config is read on first use.
let loaded = null;

function lookup(key) {
  const value = config.get(key);
  if (value === null || value === undefined) return null;
  return { kind: value.tag, value: value.val };
}

function settings() {
  if (loaded === null) loaded = parseConfig(lookup);
  return loaded;
}

export const hooks = {
  init() {
    const { settings: effective, errors } = settings();
    if (errors.length > 0) throw errors;
    return { name: "helo-sanity", summary: summary(effective), openRelay: false, needsClientName: false };
  },
  connect(session) {
    return ACCEPT;
  },
  helo(session, name, extended) {
    const { settings: effective, errors } = settings();
    if (errors.length > 0) {
      return { action: "tempfail", reply: { code: 451, enhancedStatus: "4.3.0", text: "policy misconfigured" } };
    }
    const facts = {
      clientIp: session.clientIp,
      hostname: server.hostname(),
      ownNetworks: server.ownNetworks().map(parseNetwork).filter((network) => network !== null),
    };
    const refusal = judge(effective, name, facts);
    if (refusal === null) return ACCEPT;
    log.write("info", `HELO refused for client ${session.clientIp}: ${refusal.text}`);
    return { action: "reject", reply: { code: refusal.code, enhancedStatus: refusal.status, text: refusal.text } };
  },
  extensions(session) {
    return { pipelining: true, auth: true, starttls: true, smtputf8: true, chunking: true };
  },
  auth(session, mechanism, identity) {
    return ACCEPT;
  },
  mailFrom(session, sender, params) {
    return ACCEPT;
  },
  rcptTo(session, recipient, params) {
    return ACCEPT;
  },
  data(session, message) {
    return ACCEPT;
  },
};
