#include "../rules.h"

#include <stdio.h>
#include <string.h>

#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "failed: %s\n", #cond); return 1; } } while (0)

static bool blocked(const char *sender) {
  char *list[] = {"spam.example"};
  return sender_blocked(sender, strlen(sender), list, 1);
}

int main(void) {
  CHECK(blocked("x@spam.example"));
  CHECK(blocked("x@SPAM.example"));
  CHECK(!blocked("x@ham.example"));
  CHECK(!blocked("x@spam.example.org"));
  CHECK(!blocked(""));
  char key[16];
  CHECK(counter_key("192.0.2.1", 9, key, sizeof key) && strcmp(key, "rcpt:192.0.2.1") == 0);
  CHECK(!counter_key("2001:db8::1:2:3:4", 17, key, sizeof key));
  CHECK(!recipient_over_limit(2, 2));
  CHECK(recipient_over_limit(3, 2));
  puts("rules: all checks passed");
  return 0;
}
