#include "plugins/portmap/iptables.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net/net.h"

extern char** environ;

namespace ferry::portmap {
namespace {

constexpr const char* kLockDir = "/run/ferry";
constexpr const char* kLockPath = "/run/ferry/portmap.lock";

std::string errno_text(int err) { return std::strerror(err); }

// Runtimes do not always pass a PATH that holds sbin; find_executable looks there too.
std::string find_program(const std::string& name) {
  if (auto path = net::find_executable(name)) return *path;
  throw cni::Error(cni::kInternal, name + " not found",
                   "ferry-portmap needs " + name + " (Debian package iptables) in PATH or /usr/sbin");
}

void on_alarm(int) {}  // only interrupts flock()

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

RulesLock::RulesLock(std::chrono::seconds wait) {
  mkdir(kLockDir, 0755);  // EEXIST is the normal case
  fd_ = open(kLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0)
    throw cni::Error(cni::kIOFailure, "failed to open lock " + std::string(kLockPath),
                     errno_text(errno));
  if (flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
  // Busy: block, bounded by a one-shot timer whose signal interrupts flock().
  struct sigaction sa {}, old {};
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, &old);
  itimerval timer{};
  timer.it_value.tv_sec = wait.count();
  setitimer(ITIMER_REAL, &timer, nullptr);
  int rc = flock(fd_, LOCK_EX);
  int err = errno;
  itimerval off{};
  setitimer(ITIMER_REAL, &off, nullptr);
  sigaction(SIGALRM, &old, nullptr);
  if (rc != 0) {
    close_fd(fd_);
    if (err == EINTR)
      throw cni::Error(cni::kTryAgainLater, "timed out waiting for " + std::string(kLockPath),
                       "another ferry-portmap held the hostport rules lock for more than " +
                           std::to_string(wait.count()) + "s");
    throw cni::Error(cni::kIOFailure, "failed to lock " + std::string(kLockPath), errno_text(err));
  }
}

RulesLock::~RulesLock() { close_fd(fd_); }  // closing releases the flock

Command::Command(std::string program, std::vector<std::string> args, std::string stdin_data)
    : program_(std::move(program)), stdin_data_(std::move(stdin_data)) {
  const std::string path = find_program(program_);
  signal(SIGPIPE, SIG_IGN);  // a child that exits early must not kill us through its stdin
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
    throw cni::Error(cni::kInternal, "failed to run " + program_, "pipe: " + errno_text(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> argv;
  argv.push_back(program_.data());
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int rc = posix_spawn(&pid_, path.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  close(err[1]);
  in_ = in[1];
  out_ = out[0];
  err_ = err[0];
  if (rc != 0) {
    pid_ = -1;
    close_fd(in_);
    close_fd(out_);
    close_fd(err_);
    throw cni::Error(cni::kInternal, "failed to run " + path, errno_text(rc));
  }
  if (stdin_data_.empty()) close_fd(in_);
  else fcntl(in_, F_SETFL, O_NONBLOCK);
}

Command::Command(Command&& o) noexcept
    : program_(std::move(o.program_)), pid_(o.pid_), in_(o.in_), out_(o.out_), err_(o.err_),
      stdin_data_(std::move(o.stdin_data_)) {
  o.pid_ = o.in_ = o.out_ = o.err_ = -1;
}

Command::~Command() {
  close_fd(in_);
  close_fd(out_);
  close_fd(err_);
  if (pid_ > 0) {
    int st;
    while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
  }
}

Command::Outcome Command::finish() {
  Outcome r;
  size_t written = 0;
  // Feed stdin and drain both outputs together so no pipe can fill up and stall the child.
  while (in_ >= 0 || out_ >= 0 || err_ >= 0) {
    pollfd fds[3];
    int n = 0;
    if (in_ >= 0) fds[n++] = {in_, POLLOUT, 0};
    if (out_ >= 0) fds[n++] = {out_, POLLIN, 0};
    if (err_ >= 0) fds[n++] = {err_, POLLIN, 0};
    if (poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == in_) {
        ssize_t w = write(in_, stdin_data_.data() + written, stdin_data_.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data_.size()) close_fd(in_);
        continue;
      }
      char buf[16384];
      ssize_t got = read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        (fds[i].fd == out_ ? r.out : r.err).append(buf, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        if (fds[i].fd == out_) close_fd(out_);
        else close_fd(err_);
      }
    }
  }
  int st = 0;
  while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

Command start_save(Family f) {
  return Command(f == Family::kV4 ? "iptables-save" : "ip6tables-save", {"-t", "nat"}, "");
}

Command start_restore(Family f, const std::string& input) {
  return Command(f == Family::kV4 ? "iptables-restore" : "ip6tables-restore",
                 {"--wait=60", "--noflush"}, input);
}

std::optional<NatTable> finish_save(Command& save, Family f, std::string* unusable) {
  Command::Outcome r = save.finish();
  if (r.exit_code == 0) return parse_save(r.out);
  std::string why = save.program() + " -t nat exited with " + std::to_string(r.exit_code) + ": " + r.err;
  if (unusable) {
    *unusable = why;
    return std::nullopt;
  }
  throw cni::Error(cni::kInternal, "failed to read the " + std::string(family_name(f)) + " nat table", why);
}

void finish_restore(Command& restore, Family f, const std::string& what) {
  Command::Outcome r = restore.finish();
  if (r.exit_code == 0) return;
  throw cni::Error(cni::kInternal,
                   "failed to " + what + " (" + std::string(family_name(f)) + ")",
                   restore.program() + " exited with " + std::to_string(r.exit_code) + ": " + r.err);
}

}  // namespace ferry::portmap
