// Running plugin binaries as a runtime does: posix_spawn with an exact environment, stdin
// written and stdout/stderr drained together through poll (no pipe-buffer deadlock), and
// IPAM delegation through CNI_PATH with the delegate's JSON error rethrown.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>

#include "cni/cni.h"

extern char** environ;

namespace ferry::cni {

namespace {

// A file descriptor closed on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read, write;
};

Pipe make_pipe(const std::string& binary) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw Error(kIOFailure, "failed to create a pipe to run " + binary, std::strerror(errno));
  Pipe p;
  p.read.reset(fds[0]);
  p.write.reset(fds[1]);
  return p;
}

std::string errno_text(int err) { return std::strerror(err); }

// Blocks SIGPIPE in this thread while we feed a child's stdin: a child that exits without
// reading must give us EPIPE, not kill us. A SIGPIPE raised meanwhile is consumed before
// the old mask comes back.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old_);
    sigpending(&pending_before_);
  }
  ~SigpipeBlock() {
    if (got_epipe && !sigismember(&pending_before_, SIGPIPE)) {
      sigset_t pipe_only;
      sigemptyset(&pipe_only);
      sigaddset(&pipe_only, SIGPIPE);
      struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_only, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  const sigset_t& old_mask() const { return old_; }
  bool got_epipe = false;

 private:
  sigset_t old_;
  sigset_t pending_before_;
};

pid_t spawn(const std::string& binary, const std::map<std::string, std::string>& env, Pipe& in,
            Pipe& out, Pipe& err, const sigset_t& child_mask) {
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string argv0 = binary;
  char* argv[] = {argv0.data(), nullptr};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read.get(), 0);
  posix_spawn_file_actions_adddup2(&actions, out.write.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err.write.get(), 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // nothing else of ours leaks in

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &child_mask);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  pid_t pid = -1;
  int rc = 0;
  // ETXTBSY: another thread may still hold the binary open for writing (fork races while
  // a file is being installed); libcni retries the same way, briefly.
  for (int attempt = 0; attempt < 50; ++attempt) {
    rc = posix_spawn(&pid, binary.c_str(), &actions, &attr, argv, envp.data());
    if (rc != ETXTBSY) break;
    struct timespec wait = {0, 20'000'000};
    nanosleep(&wait, nullptr);
  }
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw Error(kIOFailure, "failed to execute plugin " + binary, errno_text(rc));
  return pid;
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 128;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 128;
}

std::vector<std::string> split_path(std::string_view cni_path) {
  std::vector<std::string> dirs;
  size_t pos = 0;
  while (pos <= cni_path.size()) {
    size_t colon = cni_path.find(':', pos);
    std::string_view dir = cni_path.substr(pos, colon == cni_path.npos ? cni_path.npos : colon - pos);
    if (!dir.empty()) dirs.emplace_back(dir);
    if (colon == cni_path.npos) break;
    pos = colon + 1;
  }
  return dirs;
}

// The environment a delegate gets: ours, with the CNI_* variables of `args` and `command`.
std::map<std::string, std::string> delegate_env(std::string_view command, const CmdArgs& args) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq == kv.npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  env["CNI_COMMAND"] = std::string(command);
  env["CNI_CONTAINERID"] = args.container_id;
  env["CNI_NETNS"] = args.netns;
  env["CNI_IFNAME"] = args.ifname;
  env["CNI_ARGS"] = args.args;
  env["CNI_PATH"] = args.path;
  return env;
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t start = 0;
  while (start < s.size() && std::isspace(static_cast<unsigned char>(s[start]))) ++start;
  return s.substr(start);
}

// Runs the delegate; on a non-zero exit rethrows its error (its own code) or, when stdout
// holds no spec error, its stderr as an internal error.
ExecResult run_delegate(std::string_view command, std::string_view type, const CmdArgs& args) {
  std::string binary = find_plugin(type, args.path);
  ExecResult r = exec_plugin(binary, delegate_env(command, args), args.stdin_data);
  if (r.exit_code == 0) return r;
  json err = json::parse(r.stdout_data, nullptr, false);
  if (err.is_object() && err.contains("code") && err["code"].is_number_integer()) {
    std::string msg = err.contains("msg") && err["msg"].is_string() ? err["msg"].get<std::string>() : "";
    std::string details =
        err.contains("details") && err["details"].is_string() ? err["details"].get<std::string>() : "";
    if (msg.empty()) msg = "plugin \"" + std::string(type) + "\" failed (" + std::string(command) + ")";
    throw Error(err["code"].get<int>(), msg, details);
  }
  std::string text = trim(r.stderr_data.empty() ? r.stdout_data : r.stderr_data);
  throw Error(kInternal,
              "plugin \"" + std::string(type) + "\" failed (" + std::string(command) + ") with exit code " +
                  std::to_string(r.exit_code),
              text.empty() ? "it printed no error message" : text);
}

}  // namespace

ExecResult exec_plugin(const std::string& binary, const std::map<std::string, std::string>& env,
                       std::string_view stdin_data) {
  Pipe in = make_pipe(binary), out = make_pipe(binary), err = make_pipe(binary);
  SigpipeBlock sigpipe;
  pid_t pid = spawn(binary, env, in, out, err, sigpipe.old_mask());
  // The child holds its own copies; ours must go so EOF arrives when it exits.
  in.read.reset();
  out.write.reset();
  err.write.reset();
  ::fcntl(in.write.get(), F_SETFL, O_NONBLOCK);

  ExecResult result;
  size_t written = 0;
  if (stdin_data.empty()) in.write.reset();
  char buf[65536];
  while (out.read.get() >= 0 || err.read.get() >= 0) {
    struct pollfd fds[3];
    int n = 0;
    auto add = [&](const Fd& fd, short events) {
      if (fd.get() >= 0) fds[n++] = {fd.get(), events, 0};
    };
    add(out.read, POLLIN);
    add(err.read, POLLIN);
    add(in.write, POLLOUT);
    if (::poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      if (fds[i].fd == in.write.get()) {
        ssize_t w = ::write(in.write.get(), stdin_data.data() + written, stdin_data.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno == EPIPE) sigpipe.got_epipe = true;
        if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == stdin_data.size()) in.write.reset();
        continue;
      }
      Fd& src = fds[i].fd == out.read.get() ? out.read : err.read;
      std::string& dst = fds[i].fd == out.read.get() ? result.stdout_data : result.stderr_data;
      ssize_t r = ::read(src.get(), buf, sizeof buf);
      if (r > 0) {
        dst.append(buf, static_cast<size_t>(r));
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        src.reset();
      }
    }
  }
  in.write.reset();
  result.exit_code = wait_exit_code(pid);
  return result;
}

std::string find_plugin(std::string_view type, std::string_view cni_path) {
  if (type.empty()) throw Error(kInvalidConfig, "no plugin name provided", "set \"type\" in the configuration");
  if (type.find('/') != type.npos)
    throw Error(kInvalidConfig, "invalid plugin name: " + std::string(type), "a plugin type is a file name, not a path");
  std::vector<std::string> dirs = split_path(cni_path);
  for (const std::string& dir : dirs) {
    std::string full = dir + "/" + std::string(type);
    struct stat st;
    if (::stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return full;
  }
  std::string listed;
  for (const std::string& d : dirs) listed += (listed.empty() ? "" : " ") + d;
  throw Error(kInvalidConfig, "failed to find plugin \"" + std::string(type) + "\" in path [" + listed + "]",
              "install the plugin into a directory listed in CNI_PATH");
}

Result delegate_add(std::string_view type, const CmdArgs& args) {
  ExecResult r = run_delegate("ADD", type, args);
  json j = json::parse(r.stdout_data, nullptr, false);
  if (j.is_discarded())
    throw Error(kDecodingFailure, "failed to decode the result of plugin \"" + std::string(type) + "\"",
                "its stdout is not JSON: " + trim(r.stdout_data).substr(0, 200));
  Result res = result_from_json(j);
  if (res.cni_version.empty()) res.cni_version = args.conf.cni_version;  // libcni's fixup
  return res;
}

void delegate_del(std::string_view type, const CmdArgs& args) { run_delegate("DEL", type, args); }
void delegate_check(std::string_view type, const CmdArgs& args) { run_delegate("CHECK", type, args); }
void delegate_gc(std::string_view type, const CmdArgs& args) { run_delegate("GC", type, args); }
void delegate_status(std::string_view type, const CmdArgs& args) { run_delegate("STATUS", type, args); }

}  // namespace ferry::cni
