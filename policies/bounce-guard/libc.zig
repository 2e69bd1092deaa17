//! The few C library functions the shipped C bindings call (`malloc`,
//! `realloc`, `free`, `strlen`, `abort`), for a wasm32-freestanding module
//! that has no libc. `memcpy` comes from Zig's compiler runtime.

const std = @import("std");

const heap = std.heap.wasm_allocator;

/// Bytes in front of each block that hold its size; 16 keeps every block
/// aligned for any canonical ABI type.
const header = 16;
const alignment: std.mem.Alignment = .@"16";

fn blockOf(ptr: *anyopaque) [*]align(16) u8 {
    return @alignCast(@as([*]u8, @ptrCast(ptr)) - header);
}

fn sizeOf(block: [*]align(16) u8) usize {
    return @as(*usize, @ptrCast(block)).*;
}

pub export fn malloc(size: usize) ?*anyopaque {
    const block = heap.rawAlloc(size + header, alignment, @returnAddress()) orelse return null;
    @as(*usize, @ptrCast(@alignCast(block))).* = size;
    return block + header;
}

export fn free(ptr: ?*anyopaque) void {
    const block = blockOf(ptr orelse return);
    heap.rawFree(block[0 .. sizeOf(block) + header], alignment, @returnAddress());
}

export fn realloc(ptr: ?*anyopaque, size: usize) ?*anyopaque {
    const old = ptr orelse return malloc(size);
    const fresh = malloc(size) orelse return null;
    const keep = @min(size, sizeOf(blockOf(old)));
    @memcpy(@as([*]u8, @ptrCast(fresh))[0..keep], @as([*]const u8, @ptrCast(old))[0..keep]);
    free(old);
    return fresh;
}

export fn strlen(s: [*:0]const u8) usize {
    return std.mem.len(s);
}

export fn abort() noreturn {
    @trap();
}
