// The component: binds rules.js to relaygate's WIT world `policy`.
import config from "relaygate:policy/config@0.1.1";
import { blockedDomains, refuseSender } from "./rules.js";

const ACCEPT = { action: "accept", reply: null };
const settings = () => blockedDomains(config.get("blocked_domains"));

export const hooks = {
  init() {
    const { blocked, errors } = settings();
    if (errors.length > 0) throw errors;
    return { name: "my-policy", summary: `${blocked.size} sender domains blocked`, openRelay: false, needsClientName: false };
  },
  connect: (session) => ACCEPT,
  helo: (session, name, extended) => ACCEPT,
  extensions: (session) => ({ pipelining: true, auth: true, starttls: true, smtputf8: true, chunking: true }),
  auth: (session, mechanism, identity) => ACCEPT,
  mailFrom(session, sender, params) {
    const text = refuseSender(settings().blocked, sender);
    return text === null ? ACCEPT : { action: "reject", reply: { code: 550, enhancedStatus: "5.7.1", text } };
  },
  rcptTo: (session, recipient, params) => ACCEPT,
  data: (session, message) => ACCEPT,
};
