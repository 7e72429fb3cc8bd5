#include "client/cli/row_list_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli/npy_header.h"
#include "client/cli/row_set.h"
#include "common/quote.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"

namespace ckpt::cli {
namespace {

// Bytes read at a time.
constexpr size_t kBlockBytes = 256 * 1024;
// A text line longer than this is no row index or range (a comment may be
// longer).
constexpr size_t kMaxLineBytes = 4096;

// The file being read and what its rows are checked against; makes the
// errors, which all start alike.
class RowFile {
 public:
  RowFile(absl::string_view name, absl::string_view path, uint64_t rows)
      : name_(name), path_(path), rows_(rows) {}

  uint64_t rows() const { return rows_; }
  const std::string& path() const { return path_; }

  // INVALID_ARGUMENT "--dirty-rows NAME: 'PATH'<where>: <what>".
  absl::Status Invalid(absl::string_view where, absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("--dirty-rows ", name_, ": '", EscapeControlBytes(path_),
                     "'", where, ": ", what));
  }
  // errno's status, "--dirty-rows NAME: <what> 'PATH'".
  absl::Status Errno(absl::string_view what) const {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("--dirty-rows ", name_, ": ", what, " '",
                            EscapeControlBytes(path_), "'"));
  }

 private:
  std::string name_;
  std::string path_;
  uint64_t rows_;
};

// Reads up to `buffer.size()` bytes, fewer only at the end of the file;
// returns how many.
absl::StatusOr<size_t> ReadBlock(const RowFile& file, int fd,
                                 std::string& buffer) {
  size_t filled = 0;
  while (filled < buffer.size()) {
    const ssize_t got =
        ::read(fd, buffer.data() + filled, buffer.size() - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return file.Errno("cannot read");
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  return filled;
}

// Text rows, fed in blocks and split into lines.
class TextRowParser {
 public:
  explicit TextRowParser(const RowFile& file) : file_(file) {}

  absl::Status Feed(absl::string_view bytes) {
    while (!bytes.empty()) {
      const size_t newline = bytes.find('\n');
      CKPT_RETURN_IF_ERROR(Append(bytes.substr(0, newline)));
      if (newline == absl::string_view::npos) break;
      CKPT_RETURN_IF_ERROR(EndLine());
      bytes.remove_prefix(newline + 1);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<uint64_t>> Finish() && {
    CKPT_RETURN_IF_ERROR(EndLine());  // a last line without '\n'
    return std::move(rows_).TakeRows();
  }

 private:
  // Keeps the line's first kMaxLineBytes; past them only a comment goes on.
  absl::Status Append(absl::string_view part) {
    if (in_long_comment_) return absl::OkStatus();
    if (line_.size() + part.size() <= kMaxLineBytes) {
      line_.append(part.data(), part.size());
      return absl::OkStatus();
    }
    line_.append(part.data(), kMaxLineBytes - line_.size());
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line_), "#")) {
      in_long_comment_ = true;
      return absl::OkStatus();
    }
    return file_.Invalid(
        Where(),
        absl::StrCat(QuoteTruncated(line_), " is longer than ", kMaxLineBytes,
                     " bytes, so no row index or range A-B"));
  }

  absl::Status EndLine() {
    const absl::string_view item = absl::StripAsciiWhitespace(line_);
    if (!in_long_comment_ && !item.empty() && item[0] != '#') {
      const std::optional<RowRange> range = ParseRowRange(item);
      if (!range.has_value()) {
        // A comma-separated list is the inline form; a file takes one item
        // per line.
        return file_.Invalid(
            Where(),
            absl::StrCat(
                QuoteTruncated(item),
                " is not a row index or an ascending range A-B",
                absl::StrContains(item, ',') ? " (one per line)" : ""));
      }
      if (range->last >= file_.rows()) {
        return file_.Invalid(Where(), PastLastRow(range->last, file_.rows()));
      }
      rows_.Add(*range);
    }
    line_.clear();
    in_long_comment_ = false;
    ++line_number_;
    return absl::OkStatus();
  }

  std::string Where() const { return absl::StrCat(" line ", line_number_); }

  const RowFile& file_;
  RowSetBuilder rows_;
  std::string line_;  // the current line so far
  bool in_long_comment_ = false;
  uint64_t line_number_ = 1;
};

// The elements of a .npy array, fed in blocks that may split an element.
class NpyRowParser {
 public:
  absl::Status Feed(absl::string_view bytes) {
    if (bytes.size() > data_bytes_left_) {
      return file_.Invalid("",
                           absl::StrCat("it holds more than the ", Needed(),
                                        " data bytes its .npy header gives"));
    }
    data_bytes_left_ -= bytes.size();
    if (!partial_.empty()) {
      const size_t take =
          std::min(array_.item_bytes - partial_.size(), bytes.size());
      partial_.append(bytes.data(), take);
      bytes.remove_prefix(take);
      if (partial_.size() < array_.item_bytes) return absl::OkStatus();
      CKPT_RETURN_IF_ERROR(Element(partial_));
      partial_.clear();
    }
    while (bytes.size() >= array_.item_bytes) {
      CKPT_RETURN_IF_ERROR(Element(bytes.substr(0, array_.item_bytes)));
      bytes.remove_prefix(array_.item_bytes);
    }
    partial_.assign(bytes.data(), bytes.size());
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<uint64_t>> Finish() && {
    if (data_bytes_left_ > 0) {
      return file_.Invalid(
          "", absl::StrCat("it ends after ", Needed() - data_bytes_left_,
                           " of the ", Needed(),
                           " data bytes its .npy header gives (truncated)"));
    }
    return std::move(rows_).TakeRows();
  }

  // Refuses a shape whose data could not be in any file.
  static absl::StatusOr<NpyRowParser> Make(const RowFile& file,
                                           const NpyIntArray& array) {
    if (array.count > UINT64_MAX / array.item_bytes) {
      return file.Invalid(
          "", absl::StrCat("its .npy shape (", array.count, ",) of ",
                           array.item_bytes,
                           "-byte items is larger than any file"));
    }
    return NpyRowParser(file, array);
  }

 private:
  NpyRowParser(const RowFile& file, const NpyIntArray& array)
      : file_(file), array_(array) {}

  uint64_t Needed() const { return array_.count * array_.item_bytes; }

  // Where element `index` is, for its error.
  static std::string Where(uint64_t index) {
    return absl::StrCat(" element ", index, " (from 0)");
  }

  absl::Status Element(absl::string_view bytes) {
    uint64_t value = 0;
    for (size_t i = 0; i < bytes.size(); ++i) {
      const uint64_t byte = static_cast<uint8_t>(
          bytes[array_.big_endian ? i : bytes.size() - 1 - i]);
      value = (value << 8) | byte;
    }
    const uint64_t index = element_++;
    const unsigned bits = 8 * static_cast<unsigned>(bytes.size());
    if (array_.is_signed && (value >> (bits - 1)) != 0) {
      // Two's complement: the value is -(2^bits - value).
      const uint64_t magnitude =
          bits == 64 ? ~value + 1 : (uint64_t{1} << bits) - value;
      return file_.Invalid(Where(index), absl::StrCat("-", magnitude,
                                                      " is negative, not a row "
                                                      "index"));
    }
    if (value >= file_.rows()) {
      return file_.Invalid(Where(index), PastLastRow(value, file_.rows()));
    }
    rows_.Add(RowRange{value, value});
    return absl::OkStatus();
  }

  const RowFile& file_;
  NpyIntArray array_;
  uint64_t data_bytes_left_ = Needed();
  std::string partial_;  // an element split between blocks
  uint64_t element_ = 0;
  RowSetBuilder rows_;
};

// Feeds `head` (the first bytes read, from `from` on), then the rest of the
// file, to `parser`, and finishes it.
template <typename Parser>
absl::StatusOr<std::vector<uint64_t>> ParseRest(const RowFile& file, int fd,
                                                std::string head, size_t from,
                                                Parser parser) {
  CKPT_RETURN_IF_ERROR(parser.Feed(absl::string_view(head).substr(from)));
  std::string block = std::move(head);
  block.resize(kBlockBytes);
  while (true) {
    CKPT_ASSIGN_OR_RETURN(const size_t got, ReadBlock(file, fd, block));
    if (got == 0) break;
    CKPT_RETURN_IF_ERROR(parser.Feed(absl::string_view(block).substr(0, got)));
  }
  return std::move(parser).Finish();
}

}  // namespace

absl::StatusOr<std::vector<uint64_t>> ReadRowListFile(absl::string_view name,
                                                      absl::string_view path,
                                                      uint64_t rows) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--dirty-rows ", name, ": '@' names no file (NAME=@FILE)"));
  }
  const RowFile file(name, path, rows);
  const UniqueFd fd(::open(file.path().c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return file.Errno("cannot open");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return file.Errno("cannot stat");
  if (S_ISDIR(st.st_mode)) {
    return file.Invalid("", "it is a directory, not a file of rows");
  }
  // Enough for any .npy preamble this reads.
  std::string head(std::max(kMaxNpyPreambleBytes, kBlockBytes), '\0');
  CKPT_ASSIGN_OR_RETURN(const size_t got, ReadBlock(file, fd.get(), head));
  head.resize(got);
  if (absl::StartsWith(head, kNpyMagic)) {
    absl::StatusOr<NpyIntArray> array = ParseNpyPreamble(head);
    if (!array.ok()) return file.Invalid("", array.status().message());
    CKPT_ASSIGN_OR_RETURN(NpyRowParser parser,
                          NpyRowParser::Make(file, *array));
    return ParseRest(file, fd.get(), std::move(head), array->data_offset,
                     std::move(parser));
  }
  if (absl::EndsWithIgnoreCase(path, ".npy")) {
    return file.Invalid(
        "",
        "it is named .npy but does not start with the .npy magic "
        "\\x93NUMPY (a text list needs another name)");
  }
  return ParseRest(file, fd.get(), std::move(head), 0, TextRowParser(file));
}

}  // namespace ckpt::cli
