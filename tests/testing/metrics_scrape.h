// Reading a Prometheus endpoint from tests: GET /metrics over a plain
// socket, and the value of one sample of the text format. Header-only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace ckpt::testing {

// GET /metrics from 127.0.0.1:port over a plain socket: the body.
inline std::string Scrape(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) ==
      0) {
    const std::string request =
        "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, request.data(), request.size()) ==
        static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      ssize_t n;
      while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) {
        response.append(buffer, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? "" : response.substr(body + 4);
}

// The value of the sample of `name` whose labels include every one of
// `labels` (each `key="value"`); -1 when there is none.
inline double Sample(const std::string& metrics, absl::string_view name,
                     const std::vector<std::string>& labels = {}) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    absl::string_view series = line.substr(0, space);
    absl::string_view series_name = series.substr(0, series.find('{'));
    if (series_name != name) continue;
    bool all = true;
    for (const std::string& label : labels) {
      all = all && series.find(label) != absl::string_view::npos;
    }
    double value = 0;
    if (all && absl::SimpleAtod(line.substr(space + 1), &value)) return value;
  }
  return -1;
}

}  // namespace ckpt::testing
