// agent/core/files.h — small state files of the agent (internal to agent/core): read whole,
// replace atomically (tmp + rename, so a reader sees the old or the new file, never half).
// Errors: write_file_atomic throws AgentError naming the path; read_file_text returns "" for a
// file that cannot be read.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "agent/core/agent.h"

namespace ferry::agent {

inline std::string read_file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    out << text;
    if (!out.flush()) throw AgentError("failed to write \"" + tmp + "\"");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    throw AgentError("failed to replace \"" + path + "\": " + std::strerror(errno));
}

}  // namespace ferry::agent
