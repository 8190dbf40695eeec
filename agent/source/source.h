// agent/source/source.h — where cluster state comes from. Today: a directory of Kubernetes
// manifests (YAML/JSON), watched with inotify; the Kubernetes API source comes later and feeds
// the same model::ClusterState.
//
// Error handling: bad manifests are never fatal. Each problem is logged (spdlog warn, with
// the file name) and listed by errors(); a file that turns malformed keeps its last good objects,
// an object that turns bad keeps its last good version. Only failures to read the directory
// itself (missing, not a directory, inotify unavailable) throw SourceError, from the
// constructor or load(). If the directory disappears later, the last objects are kept, errors()
// says so, and load() re-establishes the watch once it is back. Not thread-safe: the agent's
// event loop owns the source.
#pragma once

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/model/model.h"

namespace ferry::source {

class SourceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ManifestDirSource {
 public:
  // Sets up the inotify watch on `dir` (so no change between construction and load() is lost).
  explicit ManifestDirSource(std::string dir);
  ~ManifestDirSource();
  ManifestDirSource(const ManifestDirSource&) = delete;
  ManifestDirSource& operator=(const ManifestDirSource&) = delete;

  // The inotify descriptor (non-blocking) for the agent's epoll loop: readable = call
  // handle_events().
  int fd() const { return inotify_fd_; }
  // Initial full read of every manifest file. Returns true (the first snapshot is a change).
  bool load();
  // Drains pending inotify events and re-reads only the files they name (a queue overflow or
  // the directory reappearing re-reads everything). Returns whether objects() changed.
  bool handle_events();

  // The union of all files' objects, sorted by key. If two files define the same
  // kind/namespace/name, the file whose name sorts last wins (and errors() says so).
  std::vector<model::Object> objects() const { return merged_; }
  // Current problems, one line each, naming the file: syntax errors, bad objects, duplicates.
  std::vector<std::string> errors() const;

  const std::string& dir() const { return dir_; }

  // Which names are manifests: *.yaml, *.yml, *.json; not hidden (".x"), not editor
  // temporaries ("x~", ".#x", "x.swp", "4913").
  static bool is_manifest_name(const std::string& file_name);

 private:
  struct FileState {
    std::vector<model::Object> objects;  // last good objects of this file
    std::vector<std::string> problems;   // from the last read
  };

  void watch();
  // Re-reads one file (or forgets it when gone). Logs its problems.
  void read_file(const std::string& name);
  void rescan();
  // Recomputes merged_ and duplicates_; returns whether merged_ changed.
  bool merge();

  std::string dir_;
  int inotify_fd_ = -1;
  int watch_ = -1;
  std::map<std::string, FileState> files_;  // by file name, sorted: later names win
  std::vector<model::Object> merged_;
  std::vector<std::string> duplicates_;
  std::string dir_problem_;  // the directory itself is gone or unreadable
};

}  // namespace ferry::source
