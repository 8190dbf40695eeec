#include "tests/support/support.h"

#include <sys/wait.h>

#include <cstdio>
#include <stdexcept>

namespace ferry::test {

ShellResult sh_status(const std::string& cmd) {
  ShellResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return r;
}

std::string sh(const std::string& cmd) {
  ShellResult r = sh_status(cmd);
  if (r.status != 0)
    throw std::runtime_error("command failed (" + std::to_string(r.status) + "): " + cmd + "\n" + r.out);
  return r.out;
}

TestNetns::TestNetns(std::string name) : name_(std::move(name)) {
  sh_status("ip netns del " + name_ + " 2>/dev/null");  // left over from a killed run
  sh("ip netns add " + name_);
  sh("ip -n " + name_ + " link set lo up");
}

TestNetns::~TestNetns() { sh_status("ip netns del " + name_ + " 2>/dev/null"); }

}  // namespace ferry::test
