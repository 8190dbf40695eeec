#include "tests/support/support.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

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

NetnsProcess::NetnsProcess(const std::string& netns_path, std::vector<std::string> argv, std::string log)
    : log_(std::move(log)) {
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  int ns_fd = open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
  int log_fd = open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  pid_ = fork();
  if (pid_ == 0) {
    if (setns(ns_fd, CLONE_NEWNET) != 0) _exit(126);
    dup2(log_fd, STDERR_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(ns_fd);
  close(log_fd);
}

NetnsProcess::~NetnsProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

bool NetnsProcess::running() {
  if (exited_) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    exited_ = true;
    status_ = status;
  }
  return !exited_;
}

int NetnsProcess::terminate() {
  if (running()) kill(pid_, SIGTERM);
  return wait_exit();
}

int NetnsProcess::wait_exit() {
  for (int i = 0; i < 600 && running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (running()) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
    exited_ = true;
  }
  return status_;
}

std::string NetnsProcess::log() const {
  std::ifstream in(log_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

}  // namespace ferry::test
