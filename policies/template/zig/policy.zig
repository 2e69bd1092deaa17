//! The component: binds rules.zig to relaygate's WIT world `policy` through
//! the shipped C bindings (policies/bindings/c/policy), whose header build.sh
//! translates into gen/policy.zig with `zig translate-c`.
//! Ownership, as in C: free the arguments you are given; return heap strings
//! (`policy_string_dup_n`), which the bindings free after the call.

const std = @import("std");
const c = @import("gen/policy.zig");
const rules = @import("rules.zig");
const libc = @import("libc.zig");

/// A failed safety check traps (the host answers 451 and drops the
/// instance); Zig's default handler would print through WASI.
pub const panic = std.debug.no_panic;

const Session = c.exports_relaygate_policy_hooks_session_t;
const Verdict = c.exports_relaygate_policy_hooks_verdict_t;
const Params = c.exports_relaygate_policy_hooks_list_parameter_t;

var loaded = false;
var bad_config = false;
/// `blocked_domains`; the strings stay in the config value, never freed.
var blocked: []const []const u8 = &.{};

fn text(s: c.policy_string_t) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

fn dup(out: *c.policy_string_t, s: []const u8) void {
    c.policy_string_dup_n(out, s.ptr, s.len);
}

fn load() void {
    if (loaded) return;
    loaded = true;
    var key: c.policy_string_t = undefined;
    c.policy_string_set(&key, "blocked_domains");
    var value: c.relaygate_policy_config_value_t = undefined;
    if (!c.relaygate_policy_config_get(&key, &value)) return;
    if (value.tag != c.RELAYGATE_POLICY_CONFIG_VALUE_TEXT_LIST) {
        bad_config = true;
        return;
    }
    const list = value.val.text_list;
    const domains = std.heap.wasm_allocator.alloc([]const u8, list.len) catch @trap();
    for (domains, 0..) |*domain, i| domain.* = text(list.ptr[i]);
    blocked = domains;
}

fn accept(ret: *Verdict) void {
    ret.action = c.RELAYGATE_POLICY_TYPES_ACTION_ACCEPT;
    ret.reply.is_some = false;
}

export fn exports_relaygate_policy_hooks_init(
    ret: *c.exports_relaygate_policy_hooks_policy_info_t,
    err: *c.policy_list_string_t,
) bool {
    load();
    if (bad_config) {
        const one: *c.policy_string_t = @ptrCast(@alignCast(libc.malloc(@sizeOf(c.policy_string_t)) orelse @trap()));
        dup(one, "blocked_domains: must be a list of domains");
        err.* = .{ .ptr = one, .len = 1 };
        return false;
    }
    dup(&ret.name, "my-policy");
    dup(&ret.summary, "refuses senders from blocked_domains");
    ret.open_relay = false;
    ret.needs_client_name = false;
    return true;
}

export fn exports_relaygate_policy_hooks_connect(session: *Session, ret: *Verdict) void {
    c.exports_relaygate_policy_hooks_session_free(session);
    accept(ret);
}

export fn exports_relaygate_policy_hooks_helo(
    session: *Session,
    name: *c.policy_string_t,
    extended: bool,
    ret: *Verdict,
) void {
    _ = extended;
    c.exports_relaygate_policy_hooks_session_free(session);
    c.policy_string_free(name);
    accept(ret);
}

export fn exports_relaygate_policy_hooks_extensions(session: *Session) c.exports_relaygate_policy_hooks_esmtp_extensions_t {
    c.exports_relaygate_policy_hooks_session_free(session);
    return 0x1f; // every extension the host can offer
}

export fn exports_relaygate_policy_hooks_auth(
    session: *Session,
    mechanism: *c.policy_string_t,
    identity: *c.policy_string_t,
    ret: *Verdict,
) void {
    c.exports_relaygate_policy_hooks_session_free(session);
    c.policy_string_free(mechanism);
    c.policy_string_free(identity);
    accept(ret);
}

export fn exports_relaygate_policy_hooks_mail_from(
    session: *Session,
    sender: *c.policy_string_t,
    params: *Params,
    ret: *Verdict,
) void {
    load();
    const refuse = rules.senderBlocked(text(sender.*), blocked);
    c.exports_relaygate_policy_hooks_session_free(session);
    c.policy_string_free(sender);
    c.exports_relaygate_policy_hooks_list_parameter_free(params);
    if (!refuse) return accept(ret);
    ret.action = c.RELAYGATE_POLICY_TYPES_ACTION_REJECT;
    ret.reply.is_some = true;
    ret.reply.val.code = 550;
    ret.reply.val.enhanced_status.is_some = true;
    dup(&ret.reply.val.enhanced_status.val, "5.7.1");
    dup(&ret.reply.val.text, "mail from this domain is not accepted here");
}

export fn exports_relaygate_policy_hooks_rcpt_to(
    session: *Session,
    recipient: *c.policy_string_t,
    params: *Params,
    ret: *Verdict,
) void {
    c.exports_relaygate_policy_hooks_session_free(session);
    c.policy_string_free(recipient);
    c.exports_relaygate_policy_hooks_list_parameter_free(params);
    accept(ret);
}

export fn exports_relaygate_policy_hooks_data(
    session: *Session,
    message: *c.exports_relaygate_policy_hooks_message_t,
    ret: *Verdict,
) void {
    c.exports_relaygate_policy_hooks_session_free(session);
    c.exports_relaygate_policy_hooks_message_free(message);
    accept(ret);
}
