#include "client/cli/npy_header.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/quote.h"
#include "common/status_macros.h"

namespace ckpt::cli {
namespace {

// The header dict's three entries, as written.
struct HeaderDict {
  std::string descr;
  bool fortran_order = false;
  std::vector<uint64_t> shape;
  bool has_descr = false;
  bool has_fortran_order = false;
  bool has_shape = false;
};

// The Python literal NumPy writes as the header (e.g. "{'descr': '<i8',
// 'fortran_order': False, 'shape': (3,), }"), read just as widely as that:
// quoted strings without escapes, True and False, tuples of non-negative
// integers. Anything else (a structured dtype's list, an expression) is
// refused, never evaluated.
class HeaderDictParser {
 public:
  explicit HeaderDictParser(absl::string_view text) : text_(text) {}

  absl::StatusOr<HeaderDict> Parse() {
    HeaderDict dict;
    CKPT_RETURN_IF_ERROR(Expect('{'));
    while (!Consume('}')) {
      CKPT_ASSIGN_OR_RETURN(std::string key, String());
      CKPT_RETURN_IF_ERROR(Expect(':'));
      if (key == "descr" && !dict.has_descr) {
        if (Peek() == '[')
          return Error("a structured dtype (a list of fields)");
        CKPT_ASSIGN_OR_RETURN(dict.descr, String());
        dict.has_descr = true;
      } else if (key == "fortran_order" && !dict.has_fortran_order) {
        CKPT_ASSIGN_OR_RETURN(dict.fortran_order, Bool());
        dict.has_fortran_order = true;
      } else if (key == "shape" && !dict.has_shape) {
        CKPT_ASSIGN_OR_RETURN(dict.shape, Tuple());
        dict.has_shape = true;
      } else {
        return Error(absl::StrCat("a key ", QuoteTruncated(key),
                                  " that is unknown or repeated"));
      }
      if (!Consume(',')) {
        CKPT_RETURN_IF_ERROR(Expect('}'));
        break;
      }
    }
    SkipSpace();
    if (pos_ != text_.size()) return Error("bytes after the dict");
    for (const auto& [present, key] :
         {std::pair(dict.has_descr, "descr"),
          std::pair(dict.has_fortran_order, "fortran_order"),
          std::pair(dict.has_shape, "shape")}) {
      if (!present) return Error(absl::StrCat("no '", key, "'"));
    }
    return dict;
  }

 private:
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(
        "its .npy header is not a dict of 'descr', 'fortran_order' and "
        "'shape': ",
        what, " at byte ", pos_, " of ", QuoteTruncated(text_)));
  }

  void SkipSpace() {
    while (pos_ < text_.size() && absl::ascii_isspace(text_[pos_])) ++pos_;
  }

  // The next character after spaces, or '\0' at the end.
  char Peek() {
    SkipSpace();
    return pos_ < text_.size() ? text_[pos_] : '\0';
  }

  bool Consume(char c) {
    if (Peek() != c || pos_ == text_.size()) return false;
    ++pos_;
    return true;
  }

  absl::Status Expect(char c) {
    if (Consume(c)) return absl::OkStatus();
    return Error(absl::StrCat("expected '", absl::string_view(&c, 1), "'"));
  }

  absl::StatusOr<std::string> String() {
    const char quote = Peek();
    if (quote != '\'' && quote != '"') return Error("expected a string");
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == absl::string_view::npos) return Error("an unterminated string");
    absl::string_view body = text_.substr(pos_ + 1, end - pos_ - 1);
    if (body.find('\\') != absl::string_view::npos) {
      return Error("a string with an escape");
    }
    pos_ = end + 1;
    return std::string(body);
  }

  absl::StatusOr<bool> Bool() {
    SkipSpace();
    for (const auto& [word, value] :
         {std::pair<absl::string_view, bool>("True", true),
          std::pair<absl::string_view, bool>("False", false)}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return value;
      }
    }
    return Error("expected True or False");
  }

  absl::StatusOr<std::vector<uint64_t>> Tuple() {
    CKPT_RETURN_IF_ERROR(Expect('('));
    std::vector<uint64_t> items;
    while (!Consume(')')) {
      SkipSpace();
      const size_t start = pos_;
      while (pos_ < text_.size() && absl::ascii_isdigit(text_[pos_])) ++pos_;
      uint64_t item;
      if (!absl::SimpleAtoi(text_.substr(start, pos_ - start), &item)) {
        pos_ = start;
        return Error("expected a dimension (a non-negative integer)");
      }
      if (pos_ < text_.size() && text_[pos_] == 'L') ++pos_;  // Python 2
      items.push_back(item);
      if (!Consume(',')) {
        CKPT_RETURN_IF_ERROR(Expect(')'));
        break;
      }
    }
    return items;
  }

  absl::string_view text_;
  size_t pos_ = 0;
};

// Fills `array`'s type from a descr such as "<i8": a byte order ('<', '>',
// or '|' for one byte), 'i' or 'u', and a size of 1, 2, 4 or 8.
absl::Status ParseIntDescr(absl::string_view descr, NpyIntArray& array) {
  auto refuse = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "it holds dtype ", QuoteTruncated(descr),
        ": row indices must be integers (<i1, <i2, <i4, <i8, <u1, <u2, <u4, "
        "<u8, or the same big-endian with >)"));
  };
  if (descr.size() != 3 || (descr[1] != 'i' && descr[1] != 'u')) {
    return refuse();
  }
  const char order = descr[0];
  const char size = descr[2];
  if (size != '1' && size != '2' && size != '4' && size != '8') {
    return refuse();
  }
  array.is_signed = descr[1] == 'i';
  array.item_bytes = static_cast<size_t>(size - '0');
  // '|' (no byte order) is what NumPy writes for one byte; '<' and '>' are
  // harmless there.
  if (order == '|' ? array.item_bytes != 1 : order != '<' && order != '>') {
    return refuse();
  }
  array.big_endian = order == '>';
  return absl::OkStatus();
}

std::string ShapeText(const std::vector<uint64_t>& shape) {
  return absl::StrCat("(", absl::StrJoin(shape, ", "),
                      shape.size() == 1 ? ",)" : ")");
}

}  // namespace

absl::StatusOr<NpyIntArray> ParseNpyPreamble(absl::string_view head) {
  // Magic, major and minor version, then the dict's length.
  constexpr size_t kVersionAt = kNpyMagic.size();
  if (head.size() < kVersionAt + 2) {
    return absl::InvalidArgumentError("it ends inside its .npy preamble");
  }
  const int major = static_cast<uint8_t>(head[kVersionAt]);
  const int minor = static_cast<uint8_t>(head[kVersionAt + 1]);
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("it has .npy format version ", major, ".", minor,
                     "; only 1.0, 2.0 and 3.0 are read"));
  }
  // 1.0 has a 2-byte length, 2.0 and 3.0 (UTF-8 header) a 4-byte one.
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t dict_at = kVersionAt + 2 + length_bytes;
  if (head.size() < dict_at) {
    return absl::InvalidArgumentError("it ends inside its .npy preamble");
  }
  uint64_t dict_bytes = 0;
  for (size_t i = 0; i < length_bytes; ++i) {
    dict_bytes |= uint64_t{static_cast<uint8_t>(head[kVersionAt + 2 + i])}
                  << (8 * i);
  }
  if (dict_bytes > kMaxNpyHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "its .npy header of ", dict_bytes, " bytes is longer than the ",
        kMaxNpyHeaderBytes, " read"));
  }
  if (head.size() - dict_at < dict_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("it ends inside its .npy header (", dict_bytes, " bytes, ",
                     head.size() - dict_at, " present)"));
  }
  CKPT_ASSIGN_OR_RETURN(
      HeaderDict dict,
      HeaderDictParser(head.substr(dict_at, dict_bytes)).Parse());
  NpyIntArray array;
  CKPT_RETURN_IF_ERROR(ParseIntDescr(dict.descr, array));
  if (dict.shape.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "it holds a ", dict.shape.size(), "-D array of shape ",
        ShapeText(dict.shape), dict.shape.empty() ? " (a scalar)" : "",
        ": --dirty-rows takes a 1-D array of row indices"));
  }
  // fortran_order does not matter in 1-D.
  array.count = dict.shape[0];
  array.data_offset = dict_at + dict_bytes;
  return array;
}

}  // namespace ckpt::cli
