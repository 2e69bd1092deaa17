//! bounce-guard's logic, free of the WIT bindings so `zig test rules.zig`
//! tests it natively: which recipients a bounce (null sender `<>`) may have.

const std = @import("std");

/// A `no_bounce_recipients` entry: `local@domain`, `local@*` (that local
/// part at any domain) or `*@domain` (every address of the domain).
pub const Pattern = struct {
    /// The local part, or null for any.
    local: ?[]const u8,
    /// The domain, or null for any.
    domain: ?[]const u8,

    /// Parses an entry; null when it is not one of the three forms.
    pub fn parse(entry: []const u8) ?Pattern {
        const at = std.mem.lastIndexOfScalar(u8, entry, '@') orelse return null;
        const local = entry[0..at];
        const domain = entry[at + 1 ..];
        if (local.len == 0 or domain.len == 0) return null;
        const any_local = std.mem.eql(u8, local, "*");
        const any_domain = std.mem.eql(u8, domain, "*");
        if (any_local and any_domain) return null;
        return .{
            .local = if (any_local) null else local,
            .domain = if (any_domain) null else domain,
        };
    }

    /// True when `address` (`local@domain`) fits the pattern, ignoring ASCII case.
    pub fn matches(self: Pattern, address: []const u8) bool {
        const at = std.mem.lastIndexOfScalar(u8, address, '@') orelse return false;
        if (self.local) |local| {
            if (!std.ascii.eqlIgnoreCase(local, address[0..at])) return false;
        }
        if (self.domain) |domain| {
            if (!std.ascii.eqlIgnoreCase(domain, address[at + 1 ..])) return false;
        }
        return true;
    }
};

/// The mailbox of a forward path: a source route (`@a,@b:user@c`) dropped.
pub fn mailbox(recipient: []const u8) []const u8 {
    if (recipient.len == 0 or recipient[0] != '@') return recipient;
    const colon = std.mem.indexOfScalar(u8, recipient, ':') orelse return recipient;
    return recipient[colon + 1 ..];
}

/// What to do with one recipient.
pub const Decision = enum {
    accept,
    /// A bounce to an address that sends no mail, so it cannot have caused one.
    takes_no_bounces,
    /// A bounce with more recipients than `max_recipients`.
    too_many,
};

/// Judges `recipient` of a transaction whose reverse path is `sender` (null
/// before MAIL FROM, "" for `<>`) and that has `accepted` recipients so far.
/// Only bounces are judged; every other transaction passes.
pub fn judge(
    sender: ?[]const u8,
    recipient: []const u8,
    accepted: usize,
    no_bounce: []const Pattern,
    max_recipients: usize,
) Decision {
    const s = sender orelse return .accept;
    if (s.len != 0) return .accept;
    const address = mailbox(recipient);
    for (no_bounce) |pattern| {
        if (pattern.matches(address)) return .takes_no_bounces;
    }
    if (accepted >= max_recipients) return .too_many;
    return .accept;
}

const testing = std.testing;

fn patterns(comptime entries: []const []const u8) [entries.len]Pattern {
    var out: [entries.len]Pattern = undefined;
    for (entries, 0..) |entry, i| out[i] = Pattern.parse(entry).?;
    return out;
}

test "the three entry forms parse; others do not" {
    try testing.expect(Pattern.parse("noreply@example.com") != null);
    try testing.expect(Pattern.parse("noreply@*").?.domain == null);
    try testing.expect(Pattern.parse("*@lists.example.com").?.local == null);
    for ([_][]const u8{ "", "noreply", "@example.com", "noreply@", "*@*" }) |bad| {
        try testing.expect(Pattern.parse(bad) == null);
    }
}

test "patterns match whole parts, ignoring case" {
    const p = patterns(&.{ "noreply@example.com", "do-not-reply@*", "*@lists.example.com" });
    try testing.expect(p[0].matches("NoReply@Example.COM"));
    try testing.expect(!p[0].matches("noreply@example.com.evil"));
    try testing.expect(!p[0].matches("xnoreply@example.com"));
    try testing.expect(p[1].matches("do-not-reply@anything.example"));
    try testing.expect(p[2].matches("owner@LISTS.example.com"));
    try testing.expect(!p[2].matches("owner@example.com"));
    try testing.expect(!p[2].matches("no-at-sign"));
}

test "a source route is dropped" {
    try testing.expectEqualStrings("user@c.example", mailbox("@a.example,@b.example:user@c.example"));
    try testing.expectEqualStrings("user@c.example", mailbox("user@c.example"));
}

test "only bounces are judged" {
    const p = patterns(&.{"noreply@example.com"});
    try testing.expectEqual(Decision.accept, judge("a@example.net", "noreply@example.com", 5, &p, 1));
    try testing.expectEqual(Decision.accept, judge(null, "noreply@example.com", 5, &p, 1));
    try testing.expectEqual(Decision.takes_no_bounces, judge("", "noreply@example.com", 0, &p, 1));
    try testing.expectEqual(Decision.takes_no_bounces, judge("", "@relay.example:noreply@example.com", 0, &p, 1));
}

test "a bounce gets at most max_recipients recipients" {
    try testing.expectEqual(Decision.accept, judge("", "a@example.com", 0, &.{}, 1));
    try testing.expectEqual(Decision.too_many, judge("", "b@example.com", 1, &.{}, 1));
    try testing.expectEqual(Decision.accept, judge("", "b@example.com", 1, &.{}, 2));
}
