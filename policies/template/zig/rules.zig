//! Your policy's logic, free of the WIT bindings so `zig test rules.zig` tests
//! it natively. This template refuses mail from sender domains listed in
//! `blocked_domains`.

const std = @import("std");

/// True when the domain of `sender` (after its last `@`) equals one of
/// `blocked`, ignoring ASCII case. The null sender `""` has no domain.
pub fn senderBlocked(sender: []const u8, blocked: []const []const u8) bool {
    const at = std.mem.lastIndexOfScalar(u8, sender, '@') orelse return false;
    const domain = sender[at + 1 ..];
    for (blocked) |entry| {
        if (std.ascii.eqlIgnoreCase(domain, entry)) return true;
    }
    return false;
}

test "a listed domain is blocked, in any case" {
    const blocked = [_][]const u8{"spam.example"};
    try std.testing.expect(senderBlocked("x@spam.example", &blocked));
    try std.testing.expect(senderBlocked("X@SPAM.Example", &blocked));
}

test "other domains, subdomains and the null sender pass" {
    const blocked = [_][]const u8{"spam.example"};
    try std.testing.expect(!senderBlocked("x@example.net", &blocked));
    try std.testing.expect(!senderBlocked("x@mail.spam.example", &blocked));
    try std.testing.expect(!senderBlocked("", &blocked));
    try std.testing.expect(!senderBlocked("x@spam.example", &.{}));
}
