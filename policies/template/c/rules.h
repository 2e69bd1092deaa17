// Your policy's logic, free of the WIT bindings so test/run.sh tests it natively.
// This template refuses mail from sender domains listed in `blocked_domains`.
#ifndef RULES_H
#define RULES_H
#include <stdbool.h>
#include <stddef.h>

// True when the domain of `sender` (len bytes) equals one of `blocked`
// (each NUL-terminated, lower case), ignoring ASCII case.
bool sender_blocked(const char *sender, size_t len, char *const *blocked, size_t count);
#endif
