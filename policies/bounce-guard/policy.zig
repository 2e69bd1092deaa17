//! bounce-guard: the WIT glue. Reads the config, speaks the `policy` world
//! through the shipped C bindings (policies/bindings/c/policy, translated
//! into gen/policy.zig by build.sh) and asks rules.zig at RCPT TO.
//! Ownership, as in C: free the arguments you are given; return heap strings
//! (`policy_string_dup_n`) and lists (`libc.malloc`), which the bindings free
//! after the call.

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
const heap = std.heap.wasm_allocator;

const max_recipients_limit = 1000;

/// The config, read once per instance on first use.
var loaded = false;
var no_bounce: []const rules.Pattern = &.{};
var max_recipients: usize = 1;
/// What is wrong with the config, each naming its key.
var problems: [8][]const u8 = undefined;
var problem_count: usize = 0;

fn text(s: c.policy_string_t) []const u8 {
    return if (s.len == 0) "" else s.ptr[0..s.len];
}

fn dup(out: *c.policy_string_t, s: []const u8) void {
    c.policy_string_dup_n(out, s.ptr, s.len);
}

fn problem(comptime format: []const u8, args: anytype) void {
    if (problem_count == problems.len) return;
    problems[problem_count] = std.fmt.allocPrint(heap, format, args) catch @trap();
    problem_count += 1;
}

/// The config value of `key`, or null. The value is never freed: the
/// patterns point into it for the instance's life (one SMTP session).
fn get(key: []const u8) ?c.relaygate_policy_config_value_t {
    var name: c.policy_string_t = .{ .ptr = @constCast(key.ptr), .len = key.len };
    var value: c.relaygate_policy_config_value_t = undefined;
    if (!c.relaygate_policy_config_get(&name, &value)) return null;
    return value;
}

fn load() void {
    if (loaded) return;
    loaded = true;
    if (get("no_bounce_recipients")) |value| {
        if (value.tag == c.RELAYGATE_POLICY_CONFIG_VALUE_TEXT_LIST) {
            const list = value.val.text_list;
            const parsed = heap.alloc(rules.Pattern, list.len) catch @trap();
            var count: usize = 0;
            for (0..list.len) |i| {
                const entry = text(list.ptr[i]);
                if (rules.Pattern.parse(entry)) |pattern| {
                    parsed[count] = pattern;
                    count += 1;
                } else {
                    problem("no_bounce_recipients: \"{s}\" is not local@domain, local@* or *@domain", .{entry});
                }
            }
            no_bounce = parsed[0..count];
        } else {
            problem("no_bounce_recipients: must be a list of addresses", .{});
        }
    }
    if (get("max_bounce_recipients")) |value| {
        const n = value.val.integer;
        if (value.tag != c.RELAYGATE_POLICY_CONFIG_VALUE_INTEGER or n < 1 or n > max_recipients_limit) {
            problem("max_bounce_recipients: must be an integer from 1 to {d}", .{max_recipients_limit});
        } else {
            max_recipients = @intCast(n);
        }
    }
}

fn log(message: []const u8) void {
    var s: c.policy_string_t = .{ .ptr = @constCast(message.ptr), .len = message.len };
    c.relaygate_policy_log_write(c.RELAYGATE_POLICY_LOG_LEVEL_INFO, &s);
}

fn accept(ret: *Verdict) void {
    ret.action = c.RELAYGATE_POLICY_TYPES_ACTION_ACCEPT;
    ret.reply.is_some = false;
}

fn reject(ret: *Verdict, status: []const u8, reply: []const u8) void {
    ret.action = c.RELAYGATE_POLICY_TYPES_ACTION_REJECT;
    ret.reply.is_some = true;
    ret.reply.val.code = 550;
    ret.reply.val.enhanced_status.is_some = true;
    dup(&ret.reply.val.enhanced_status.val, status);
    dup(&ret.reply.val.text, reply);
}

export fn exports_relaygate_policy_hooks_init(
    ret: *c.exports_relaygate_policy_hooks_policy_info_t,
    err: *c.policy_list_string_t,
) bool {
    load();
    if (problem_count > 0) {
        const size = problem_count * @sizeOf(c.policy_string_t);
        const list: [*]c.policy_string_t = @ptrCast(@alignCast(libc.malloc(size) orelse @trap()));
        for (problems[0..problem_count], 0..) |p, i| dup(&list[i], p);
        err.* = .{ .ptr = list, .len = problem_count };
        return false;
    }
    var summary: [120]u8 = undefined;
    const line = std.fmt.bufPrint(&summary, "bounces: at most {d} recipient(s), {d} address pattern(s) take none", .{ max_recipients, no_bounce.len }) catch @trap();
    dup(&ret.name, "bounce-guard");
    dup(&ret.summary, line);
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
    c.exports_relaygate_policy_hooks_session_free(session);
    c.policy_string_free(sender);
    c.exports_relaygate_policy_hooks_list_parameter_free(params);
    accept(ret);
}

export fn exports_relaygate_policy_hooks_rcpt_to(
    session: *Session,
    recipient: *c.policy_string_t,
    params: *Params,
    ret: *Verdict,
) void {
    load();
    const sender: ?[]const u8 = if (session.sender.is_some) text(session.sender.val) else null;
    const decision = rules.judge(sender, text(recipient.*), session.recipients.len, no_bounce, max_recipients);
    c.exports_relaygate_policy_hooks_session_free(session);
    c.policy_string_free(recipient);
    c.exports_relaygate_policy_hooks_list_parameter_free(params);
    switch (decision) {
        .accept => accept(ret),
        .takes_no_bounces => {
            log("bounce refused: the recipient sends no mail");
            reject(ret, "5.7.1", "this address sends no mail, so it takes no bounces");
        },
        .too_many => {
            log("bounce refused: too many recipients");
            reject(ret, "5.5.3", "too many recipients for a bounce");
        },
    }
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
