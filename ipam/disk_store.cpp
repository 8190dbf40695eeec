// The reference host-local's on-disk store (backend/disk), byte for byte, so the two plugins
// can take turns on one directory. Two differences that a reader of the files cannot see:
//  - a reservation appears atomically with its content (an O_TMPFILE linked into place, which
//    fails with EEXIST exactly like the reference's O_EXCL create), so a process killed in the
//    middle of ADD never leaves an empty file that DEL cannot match;
//  - the lock wait is bounded (the reference blocks forever: plugins#561).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "ipam/ipam.h"

namespace ferry::ipam {

namespace {

constexpr std::string_view kLockFile = "lock";
constexpr std::string_view kLastReservedPrefix = "last_reserved_ip.";

[[noreturn]] void io_error(const std::string& what, int err) {
  throw cni::Error(cni::kIOFailure, what + ": " + std::strerror(err));
}

// mkdir -p with mode 0755 for each created component (as Go's MkdirAll). The common case,
// an existing store, costs one mkdir().
void make_dirs(const std::string& dir) {
  if (dir.empty() || mkdir(dir.c_str(), 0755) == 0 || errno == EEXIST) return;
  if (errno != ENOENT) io_error("failed to create " + dir, errno);
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) make_dirs(dir.substr(0, slash));
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) io_error("failed to create " + dir, errno);
}

// Reads a small file relative to `dir_fd`; nullopt if it does not exist or cannot be read.
std::optional<std::string> read_small_file(int dir_fd, const char* name) {
  int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  std::string out;
  char buf[512];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return std::nullopt;
    }
    out.append(buf, static_cast<size_t>(n));
    // A short read of a regular file is its end: one read() per reservation file.
    if (static_cast<size_t>(n) < sizeof buf || out.size() > 64 * 1024) break;
  }
  close(fd);
  return out;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(kSpace) - b + 1));
}

// A no-op handler: its only job is to make a blocking flock() return EINTR.
void on_lock_timer(int) {}

}  // namespace

DiskStore::DiskStore(std::string dir) : dir_(std::move(dir)) {
  make_dirs(dir_);
  dir_fd_ = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) io_error("failed to open " + dir_, errno);
  lock_fd_ = openat(dir_fd_, std::string(kLockFile).c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0750);
  if (lock_fd_ < 0) {
    int err = errno;
    close(dir_fd_);
    io_error("failed to open the lock file " + dir_ + "/lock", err);
  }
}

DiskStore::~DiskStore() {
  if (lock_fd_ >= 0) close(lock_fd_);  // also drops the flock
  if (dir_fd_ >= 0) close(dir_fd_);
}

void DiskStore::lock(std::chrono::milliseconds timeout) {
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) == 0) return;
  if (errno != EWOULDBLOCK) io_error("failed to lock " + dir_ + "/lock", errno);

  // Block in flock() (woken as soon as the holder lets go) under a timer that interrupts it
  // at the deadline. The timer signals this thread only and keeps firing after the deadline,
  // so a signal that lands between two flock() calls cannot leave us blocked forever.
  struct sigaction action {}, old_action{};
  action.sa_handler = on_lock_timer;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: flock() must return EINTR
  sigaction(SIGALRM, &action, &old_action);
  sigset_t alarm_only, old_mask;
  sigemptyset(&alarm_only);
  sigaddset(&alarm_only, SIGALRM);
  pthread_sigmask(SIG_UNBLOCK, &alarm_only, &old_mask);

  sigevent event{};
  event.sigev_notify = SIGEV_THREAD_ID;
  event.sigev_signo = SIGALRM;
  event._sigev_un._tid = gettid();  // glibc 2.36 lacks the sigev_notify_thread_id macro
  timer_t timer{};
  bool have_timer = timer_create(CLOCK_MONOTONIC, &event, &timer) == 0;
  if (have_timer) {
    itimerspec spec{};
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    if (ns <= 0) ns = 1;
    spec.it_value.tv_sec = ns / 1'000'000'000;
    spec.it_value.tv_nsec = ns % 1'000'000'000;
    spec.it_interval.tv_nsec = 20'000'000;
    timer_settime(timer, 0, &spec, nullptr);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int rc = -1, err = 0;
  for (;;) {
    rc = flock(lock_fd_, have_timer ? LOCK_EX : LOCK_EX | LOCK_NB);
    err = errno;
    if (rc == 0 || std::chrono::steady_clock::now() >= deadline) break;
    if (err == EINTR) continue;
    if (err == EWOULDBLOCK && !have_timer) {  // no timer: fall back to short sleeps
      usleep(2000);
      continue;
    }
    break;
  }
  if (have_timer) timer_delete(timer);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  sigaction(SIGALRM, &old_action, nullptr);

  if (rc == 0) return;
  if (err == EINTR || err == EWOULDBLOCK) {
    auto ms = timeout.count();
    std::string waited = ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
    throw cni::Error(cni::kTryAgainLater,
                     "timed out after " + waited + " waiting for the lock " + dir_ + "/lock",
                     "another host-local process holds it; try again later, and look for a hung "
                     "process with: fuser -v " + dir_ + "/lock");
  }
  io_error("failed to lock " + dir_ + "/lock", err);
}

void DiskStore::unlock() { flock(lock_fd_, LOCK_UN); }

std::vector<Reservation> DiskStore::list() {
  int fd = dup(dir_fd_);
  if (fd < 0) io_error("failed to read " + dir_, errno);
  DIR* d = fdopendir(fd);
  if (!d) {
    int err = errno;
    close(fd);
    io_error("failed to read " + dir_, err);
  }
  rewinddir(d);
  std::vector<Reservation> out;
  unusual_names_.clear();
  while (dirent* e = readdir(d)) {
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    // Reservations are the files named by an address (lock and last_reserved_ip.* are not).
    auto ip = IPAddr::parse(e->d_name);
    if (!ip) continue;
    auto content = read_small_file(dir_fd_, e->d_name);
    if (!content) continue;  // gone or unreadable: the reference skips these too
    IPAddr addr = canonical_ip(*ip);
    if (ip_file_name(addr) != e->d_name) unusual_names_[addr] = e->d_name;
    out.push_back(Reservation{addr, trim(*content)});
  }
  closedir(d);
  return out;
}

bool DiskStore::reserve(const IPAddr& ip, const cni::Attachment& owner, size_t range_set) {
  const std::string name = ip_file_name(ip);
  const std::string content = owner_key(owner);

  int tmp = openat(dir_fd_, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (tmp >= 0) {
    if (!write_all(tmp, content)) {
      int err = errno;
      close(tmp);
      io_error("failed to write the reservation of " + name + " in " + dir_, err);
    }
    int rc = linkat(tmp, "", dir_fd_, name.c_str(), AT_EMPTY_PATH);
    if (rc != 0 && errno != EEXIST) {  // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH
      std::string proc = "/proc/self/fd/" + std::to_string(tmp);
      rc = linkat(AT_FDCWD, proc.c_str(), dir_fd_, name.c_str(), AT_SYMLINK_FOLLOW);
    }
    int err = errno;
    close(tmp);
    if (rc != 0) {
      if (err == EEXIST) return false;
      io_error("failed to reserve " + dir_ + "/" + name, err);
    }
  } else {
    // No O_TMPFILE on this filesystem: the reference's O_EXCL create, then the content.
    int fd = openat(dir_fd_, name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) return false;
      io_error("failed to reserve " + dir_ + "/" + name, errno);
    }
    bool ok = write_all(fd, content);
    int err = errno;
    if (close(fd) != 0 && ok) {
      ok = false;
      err = errno;
    }
    if (!ok) {
      unlinkat(dir_fd_, name.c_str(), 0);
      io_error("failed to write " + dir_ + "/" + name, err);
    }
  }

  // The round-robin position is a hint: failing to record it does not undo the reservation.
  // Rewritten in place, not with O_TRUNC: ext4 flushes a file truncated to zero when it is
  // closed (auto_da_alloc), which measured 3.6 ms against 8 us in place. A torn write can
  // only cost round-robin once (a wrong or unparsable hint), as with the reference.
  std::string last = std::string(kLastReservedPrefix) + std::to_string(range_set);
  int fd = openat(dir_fd_, last.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && pwrite(fd, name.data(), name.size(), 0) == static_cast<ssize_t>(name.size()) &&
            ftruncate(fd, static_cast<off_t>(name.size())) == 0;
  if (!ok)
    std::fprintf(stderr, "ferry-host-local: cannot record %s/%s: %s\n", dir_.c_str(), last.c_str(),
                 std::strerror(errno));
  if (fd >= 0) close(fd);
  return true;
}

void DiskStore::release(const IPAddr& ip) {
  auto unusual = unusual_names_.find(ip);
  std::string name = unusual != unusual_names_.end() ? unusual->second : ip_file_name(ip);
  if (unlinkat(dir_fd_, name.c_str(), 0) != 0 && errno != ENOENT)
    io_error("failed to remove " + dir_ + "/" + name, errno);
}

std::optional<IPAddr> DiskStore::last_reserved(size_t range_set) {
  std::string name = std::string(kLastReservedPrefix) + std::to_string(range_set);
  auto content = read_small_file(dir_fd_, name.c_str());
  if (!content) return std::nullopt;
  auto ip = IPAddr::parse(trim(*content));
  if (!ip) return std::nullopt;
  return canonical_ip(*ip);
}

}  // namespace ferry::ipam
