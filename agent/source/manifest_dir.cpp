// ManifestDirSource: a directory of Kubernetes manifests, watched with inotify.
//
// Only files that inotify names are re-read. Writes are picked up when complete: in-place
// writes at IN_CLOSE_WRITE, atomic writes (temp file + rename) at IN_MOVED_TO; IN_MODIFY is not
// watched, so a half-written file is never read. Entries named "..*" are how Kubernetes swaps
// ConfigMap volumes (the ..data symlink): any change to them re-reads everything.
#include <dirent.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "agent/source/source.h"

namespace ferry::source {

namespace {

constexpr uint32_t kWatchMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
                                IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && std::string_view(s).substr(s.size() - suffix.size()) == suffix;
}

std::string errno_text(int err) { return std::strerror(err); }

enum class ReadResult { Ok, Missing, Failed };

// Reads a regular file (following symlinks). Missing: gone or not a regular file.
ReadResult read_text(const std::string& path, std::string& text, std::string& error) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return ReadResult::Missing;
    error = "cannot read: " + errno_text(errno);
    return ReadResult::Failed;
  }
  if (!S_ISREG(st.st_mode)) return ReadResult::Missing;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return ReadResult::Missing;
    error = "cannot read: " + errno_text(errno);
    return ReadResult::Failed;
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) {
    error = "cannot read: I/O error";
    return ReadResult::Failed;
  }
  text = std::move(buf).str();
  return ReadResult::Ok;
}

}  // namespace

bool ManifestDirSource::is_manifest_name(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;  // hidden, ".#x" lock files, "..data"
  if (name.back() == '~' || name == "4913") return false;  // backups; vim's write-permission probe
  return ends_with(name, ".yaml") || ends_with(name, ".yml") || ends_with(name, ".json");
}

ManifestDirSource::ManifestDirSource(std::string dir) : dir_(std::move(dir)) {
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) throw SourceError("manifest dir " + dir_ + ": inotify_init1: " + errno_text(errno));
  try {
    watch();
  } catch (...) {
    ::close(inotify_fd_);
    throw;
  }
}

ManifestDirSource::~ManifestDirSource() {
  if (inotify_fd_ >= 0) ::close(inotify_fd_);
}

void ManifestDirSource::watch() {
  watch_ = inotify_add_watch(inotify_fd_, dir_.c_str(), kWatchMask);
  if (watch_ < 0) throw SourceError("manifest dir " + dir_ + ": cannot watch: " + errno_text(errno));
  dir_problem_.clear();
}

bool ManifestDirSource::load() {
  if (watch_ < 0) watch();  // the directory was removed and is expected back
  rescan();
  merge();
  return true;
}

void ManifestDirSource::rescan() {
  DIR* d = ::opendir(dir_.c_str());
  if (!d) throw SourceError("manifest dir " + dir_ + ": cannot list: " + errno_text(errno));
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d))
    if (is_manifest_name(e->d_name)) names.emplace_back(e->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (auto it = files_.begin(); it != files_.end();)  // files that vanished unseen
    it = std::binary_search(names.begin(), names.end(), it->first) ? std::next(it) : files_.erase(it);
  for (const auto& name : names) read_file(name);
}

void ManifestDirSource::read_file(const std::string& name) {
  std::string text, error;
  switch (read_text(dir_ + "/" + name, text, error)) {
    case ReadResult::Missing:
      if (files_.erase(name)) spdlog::info("manifest dir {}: {} removed", dir_, name);
      return;
    case ReadResult::Failed: {
      FileState& f = files_[name];  // keeps the last good objects
      f.problems = {name + ": " + error};
      spdlog::warn("manifest dir {}: {}", dir_, f.problems.front());
      return;
    }
    case ReadResult::Ok:
      break;
  }
  model::ManifestDecode decoded = model::decode_manifest(name, text);
  FileState& f = files_[name];
  f.problems.clear();
  for (const auto& p : decoded.errors) {
    f.problems.push_back(p.message);
    spdlog::warn("manifest dir {}: {}", dir_, p.message);
  }
  for (const auto& n : decoded.notes) spdlog::info("manifest dir {}: {}", dir_, n);
  if (decoded.syntax_error) {
    if (!f.objects.empty()) {
      f.problems.push_back(name + ": keeping its " + std::to_string(f.objects.size()) + " objects from the last good read");
      spdlog::warn("manifest dir {}: {}", dir_, f.problems.back());
    }
    return;
  }
  // An object that turned bad keeps its last good version (bad input loses nothing).
  std::vector<model::Object> objects = std::move(decoded.objects);
  for (const auto& p : decoded.errors) {
    if (!p.key) continue;
    bool still_there = std::any_of(objects.begin(), objects.end(), [&](const auto& o) { return model::key_of(o) == *p.key; });
    if (still_there) continue;
    for (const auto& old : f.objects)
      if (model::key_of(old) == *p.key) {
        objects.push_back(old);
        f.problems.push_back(name + ": keeping the last good version of " + p.key->str());
        spdlog::warn("manifest dir {}: {}", dir_, f.problems.back());
        break;
      }
  }
  f.objects = std::move(objects);
}

bool ManifestDirSource::handle_events() {
  alignas(inotify_event) char buf[64 * 1024];
  std::set<std::string> changed;
  bool everything = false;
  while (true) {
    ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) spdlog::warn("manifest dir {}: reading inotify events: {}", dir_, errno_text(errno));
      break;
    }
    if (n == 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        everything = true;
        continue;
      }
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
        if (ev->wd == watch_ && watch_ >= 0) {
          if (!(ev->mask & IN_IGNORED)) inotify_rm_watch(inotify_fd_, watch_);
          watch_ = -1;
          dir_problem_ = dir_ + ": directory removed or moved; keeping the last objects until it is back and load() runs";
          spdlog::warn("manifest dir {}", dir_problem_);
        }
        continue;
      }
      std::string name = ev->len ? std::string(ev->name) : std::string();
      if (name.rfind("..", 0) == 0) everything = true;  // a ConfigMap volume swapped its ..data link
      else if (is_manifest_name(name)) changed.insert(name);
    }
  }
  if (watch_ < 0) return false;
  if (everything) {
    try {
      rescan();
    } catch (const SourceError& e) {
      dir_problem_ = e.what();
      spdlog::warn("{}", dir_problem_);
    }
  } else {
    for (const auto& name : changed) read_file(name);
  }
  return merge();
}

bool ManifestDirSource::merge() {
  struct Winner {
    model::Object object;
    std::string file;
  };
  std::map<model::ObjectKey, Winner> by_key;
  std::vector<std::string> duplicates;
  for (const auto& [file, state] : files_) {  // name order: a later file overrides
    for (const auto& o : state.objects) {
      model::ObjectKey key = model::key_of(o);
      auto it = by_key.find(key);
      if (it != by_key.end()) {
        duplicates.push_back(it->second.file == file
                                 ? file + ": " + key.str() + " is defined twice; using the later one"
                                 : key.str() + " is defined in " + it->second.file + " and " + file + "; using " + file);
        it->second = Winner{o, file};
      } else {
        by_key.emplace(std::move(key), Winner{o, file});
      }
    }
  }
  for (const auto& d : duplicates)
    if (std::find(duplicates_.begin(), duplicates_.end(), d) == duplicates_.end())
      spdlog::warn("manifest dir {}: {}", dir_, d);
  duplicates_ = std::move(duplicates);

  std::vector<model::Object> merged;
  merged.reserve(by_key.size());
  for (auto& [key, w] : by_key) merged.push_back(std::move(w.object));
  bool changed = merged != merged_;
  merged_ = std::move(merged);
  return changed;
}

std::vector<std::string> ManifestDirSource::errors() const {
  std::vector<std::string> out;
  if (!dir_problem_.empty()) out.push_back(dir_problem_);
  for (const auto& [file, state] : files_) out.insert(out.end(), state.problems.begin(), state.problems.end());
  out.insert(out.end(), duplicates_.begin(), duplicates_.end());
  return out;
}

}  // namespace ferry::source
