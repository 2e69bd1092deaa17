// The component: binds rules.js to relaygate's WIT world `stateful-policy`
// (the world `policy` plus the `state` import).
import config from "relaygate:policy/config@0.1.1";
import state from "relaygate:policy/state@0.1.1";
import { WINDOW_MS, blockedDomains, counterKey, recipientLimit, refuseRecipient, refuseSender } from "./rules.js";

const ACCEPT = { action: "accept", reply: null };
const refuse = (action, code, enhancedStatus, text) => ({ action, reply: { code, enhancedStatus, text } });

function settings() {
  const { blocked, errors: blockedErrors } = blockedDomains(config.get("blocked_domains"));
  const { limit, errors: limitErrors } = recipientLimit(config.get("max_recipients_per_hour"));
  return { blocked, limit, errors: [...blockedErrors, ...limitErrors] };
}

export const hooks = {
  init() {
    const { blocked, limit, errors } = settings();
    if (errors.length > 0) throw errors;
    return {
      name: "my-policy",
      summary: `${blocked.size} sender domains blocked, ${limit} recipients per client and hour`,
      openRelay: false,
      needsClientName: false,
    };
  },
  connect: (session) => ACCEPT,
  helo: (session, name, extended) => ACCEPT,
  extensions: (session) => ({ pipelining: true, auth: true, starttls: true, smtputf8: true, chunking: true }),
  auth: (session, mechanism, identity) => ACCEPT,
  mailFrom(session, sender, params) {
    const text = refuseSender(settings().blocked, sender);
    return text === null ? ACCEPT : refuse("reject", 550, "5.7.1", text);
  },
  rcptTo(session, recipient, params) {
    let count;
    try {
      count = Number(state.increment(counterKey(session.clientIp), 1, WINDOW_MS));
    } catch {
      // The store is down or slow: defer, so that the client retries.
      return refuse("tempfail", 451, "4.3.0", "cannot count recipients now, try again later");
    }
    const text = refuseRecipient(count, settings().limit);
    return text === null ? ACCEPT : refuse("tempfail", 450, "4.7.1", text);
  },
  data: (session, message) => ACCEPT,
};
