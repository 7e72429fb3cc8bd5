// CPU time used so far by this process or another one (user + system, in
// seconds), so that a benchmark can say where a phase's time went: its own
// threads, the servers it started, a daemon it knows the PID of.
// Header-only; Linux (/proc).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ckpt::bench {

inline double SelfCpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec * 1e-6; };
  return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// From /proc/PID/stat (utime and stime, fields 14 and 15); 0 when the
// process is gone or pid is 0.
inline double ProcessCpuSeconds(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream file(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream text;
  text << file.rdbuf();
  const std::string stat = text.str();
  // The command name (field 2) may hold spaces: count fields after its ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state), so utime and stime are [11] and [12].
  uint64_t utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return 0;
  }
  return static_cast<double>(utime + stime) / ::sysconf(_SC_CLK_TCK);
}

// The PID in `path` (a daemon's pid file); 0 when absent or unreadable.
inline pid_t PidFromFile(const std::string& path) {
  std::ifstream file(path);
  std::string text;
  std::getline(file, text);
  int pid = 0;
  return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &pid) ? pid : 0;
}

}  // namespace ckpt::bench
