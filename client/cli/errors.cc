#include "client/cli/errors.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace ckpt::cli {

int ReportError(const absl::Status& status, const OutputOptions& out,
                absl::string_view hint) {
  const std::string code = absl::StatusCodeToString(status.code());
  if (out.json) {
    nlohmann::json error = {{"code", code},
                            {"message", std::string(status.message())}};
    if (!hint.empty()) error["hint"] = std::string(hint);
    // One line, whatever the message holds; invalid UTF-8 from a server is
    // replaced rather than thrown on.
    std::cerr << error.dump(-1, ' ', false,
                            nlohmann::json::error_handler_t::replace)
              << std::endl;
  } else {
    std::cerr << "ckpt: " << code << ": " << status.message() << std::endl;
    if (!hint.empty()) std::cerr << "ckpt: " << hint << std::endl;
  }
  return EXIT_FAILURE;
}

int ReportUsageError(absl::string_view message, int exit_code,
                     const OutputOptions& out, absl::string_view hint) {
  ReportError(absl::InvalidArgumentError(message), out, hint);
  return exit_code == 0 ? EXIT_FAILURE : exit_code;
}

absl::Status CheckVerb(absl::string_view word,
                       const std::vector<std::string>& verbs) {
  if (std::find(verbs.begin(), verbs.end(), word) != verbs.end()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown command '", word, "'; the commands are: ",
      absl::StrJoin(verbs, ", "), " (ckpt --help describes them)"));
}

}  // namespace ckpt::cli
