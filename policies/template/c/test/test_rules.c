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
  puts("rules: all checks passed");
  return 0;
}
