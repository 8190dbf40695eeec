// plugins/portmap/iptables.h — runs iptables-save / iptables-restore (and the ip6tables
// pair) for ferry-portmap: one save and at most one restore per family and verb, both
// families in parallel, under one host-wide lock so concurrent ADDs never both create the
// shared chains and jumps.
//
// Errors: throws cni::Error (kInternal for a failing command, with its stderr; kTryAgainLater
// when the lock is not free within the wait).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "plugins/portmap/rules.h"

namespace ferry::portmap {

// Host-wide exclusive lock on /run/ferry/portmap.lock, held for a save + restore cycle.
class RulesLock {
 public:
  explicit RulesLock(std::chrono::seconds wait = std::chrono::seconds(60));
  ~RulesLock();
  RulesLock(const RulesLock&) = delete;
  RulesLock& operator=(const RulesLock&) = delete;

 private:
  int fd_ = -1;
};

// A running command with its stdin written and its output collected by finish().
class Command {
 public:
  Command(std::string program, std::vector<std::string> args, std::string stdin_data);
  Command(Command&&) noexcept;
  Command(const Command&) = delete;
  ~Command();
  struct Outcome {
    int exit_code = 0;
    std::string out;
    std::string err;
  };
  Outcome finish();  // waits for exit; safe to call once
  const std::string& program() const { return program_; }

 private:
  std::string program_;
  int pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string stdin_data_;
};

// `iptables-save -t nat` (or ip6tables-save) started in the background.
Command start_save(Family f);
// `iptables-restore -w --noflush` (or ip6tables-restore) reading `input`.
Command start_restore(Family f, const std::string& input);

// Waits for a save and returns its table. When it fails: with `unusable` set, returns
// nullopt and stores why there (DEL/GC tolerate one family being unusable, e.g. IPv6
// disabled); without, throws.
std::optional<NatTable> finish_save(Command& save, Family f, std::string* unusable = nullptr);
// Waits for a restore; throws cni::Error naming `what`, the family and iptables' message.
void finish_restore(Command& restore, Family f, const std::string& what);

}  // namespace ferry::portmap
