// run_command: posix_spawn with piped stdin/stdout/stderr, one poll loop (no deadlock on
// large outputs such as iptables-save).
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "net/net.h"

extern char** environ;

namespace ferry::net {

namespace {

struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

void make_pipe(Fd& r, Fd& w) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw Error(std::string("pipe failed: ") + std::strerror(errno), errno);
  r.fd = p[0];
  w.fd = p[1];
}

}  // namespace

CommandResult run_command(const std::vector<std::string>& argv, std::string_view input) {
  if (argv.empty()) throw Error("run_command: empty argv", EINVAL);
  Fd in_r, in_w, out_r, out_w, err_r, err_w;
  make_pipe(in_r, in_w);
  make_pipe(out_r, out_w);
  make_pipe(err_r, err_w);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in_r.fd, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.fd, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  CommandResult res;
  if (rc != 0) {
    res.status = 127;
    res.err = "cannot run " + argv[0] + ": " + std::strerror(rc);
    return res;
  }
  in_r.reset();
  out_w.reset();
  err_w.reset();
  if (input.empty()) in_w.reset();
  fcntl(in_w.fd, F_SETFL, O_NONBLOCK);

  size_t written = 0;
  char buf[16384];
  while (out_r.fd >= 0 || err_r.fd >= 0 || in_w.fd >= 0) {
    pollfd pfds[3];
    int n = 0;
    int idx_in = -1, idx_out = -1, idx_err = -1;
    if (in_w.fd >= 0) { idx_in = n; pfds[n++] = {in_w.fd, POLLOUT, 0}; }
    if (out_r.fd >= 0) { idx_out = n; pfds[n++] = {out_r.fd, POLLIN, 0}; }
    if (err_r.fd >= 0) { idx_err = n; pfds[n++] = {err_r.fd, POLLIN, 0}; }
    if (poll(pfds, static_cast<nfds_t>(n), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (idx_in >= 0 && pfds[idx_in].revents) {
      ssize_t w = ::write(in_w.fd, input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if (w < 0 && errno != EAGAIN && errno != EINTR) in_w.reset();  // EPIPE: reader exited
      if (written == input.size()) in_w.reset();
    }
    auto drain = [&](int idx, Fd& fd, std::string& to) {
      if (idx < 0 || !pfds[idx].revents) return;
      ssize_t r = ::read(fd.fd, buf, sizeof buf);
      if (r > 0) to.append(buf, static_cast<size_t>(r));
      else if (r == 0 || (errno != EINTR && errno != EAGAIN)) fd.reset();
    };
    drain(idx_out, out_r, res.out);
    drain(idx_err, err_r, res.err);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  res.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return res;
}

}  // namespace ferry::net
