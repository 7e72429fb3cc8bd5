// --dirty-rows NAME=@FILE (client/cli/row_list_file.h): text and .npy row
// files written byte by byte here, read through the real file system, give
// what the inline list gives; every malformed or hostile file is refused
// with a message that names the file and the place.
#include "client/cli/row_list_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "client/cli/args.h"
#include "client/cli/npy_header.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ckpt::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Optional;

MATCHER_P(IsOkAndHoldsVector, rows, "") {
  if (!arg.ok()) {
    *result_listener << "status " << arg.status();
    return false;
  }
  return *arg == rows;
}

// An ok result holding exactly `rows`.
auto IsOkAndHoldsRows(std::vector<uint64_t> rows) {
  return IsOkAndHoldsVector(std::move(rows));
}

// A .npy file: the magic, version `major`.0, the dict's length and `dict`,
// padded with spaces and a '\n' to a multiple of 64 bytes as NumPy pads it
// (unless `pad` is false), then `data`.
std::string Npy(const std::string& dict, const std::string& data, int major = 1,
                bool pad = true) {
  const size_t length_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  if (pad) {
    const size_t used = 8 + length_bytes + header.size() + 1;
    header.append((64 - used % 64) % 64, ' ');
    header += '\n';
  }
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < length_bytes; ++i) {
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  }
  return out + header + data;
}

std::string Dict(const std::string& descr, const std::string& shape,
                 const std::string& fortran = "False") {
  return absl::StrCat("{'descr': '", descr, "', 'fortran_order': ", fortran,
                      ", 'shape': ", shape, ", }");
}

// `values` as `bytes`-byte two's-complement integers in the byte order.
std::string Elements(const std::vector<int64_t>& values, size_t bytes,
                     bool big_endian = false) {
  std::string out;
  for (const int64_t value : values) {
    const auto bits = static_cast<uint64_t>(value);
    for (size_t i = 0; i < bytes; ++i) {
      const size_t byte = big_endian ? bytes - 1 - i : i;
      out += static_cast<char>((bits >> (8 * byte)) & 0xff);
    }
  }
  return out;
}

class RowListFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/ckpt-row-list-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `bytes` to DIR/name; returns the path. (A new name is faster
  // than rewriting one: ext4 flushes a file truncated to be rewritten.)
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  // Reading `bytes` as file `name` of a 10-row tensor "emb" fails with
  // INVALID_ARGUMENT "--dirty-rows emb: 'PATH'" + `rest`.
  void ExpectRefused(const std::string& name, const std::string& bytes,
                     const std::string& rest, uint64_t rows = 10) {
    const std::string path = Write(name, bytes);
    absl::StatusOr<std::vector<uint64_t>> read =
        ReadRowListFile("emb", path, rows);
    ASSERT_FALSE(read.ok()) << name;
    EXPECT_TRUE(absl::IsInvalidArgument(read.status())) << read.status();
    EXPECT_EQ(read.status().message(),
              absl::StrCat("--dirty-rows emb: '", path, "'", rest));
  }

  std::string dir_;
};

TEST_F(RowListFileTest, TextGivesWhatTheInlineListGives) {
  const std::string path =
      Write("rows.txt",
            "# rows the trainer touched\n3\r\n\n  100-102  \r\n7\n   # 5\n\t1\n"
            "101\n5-5\n3");  // no '\n' after the last line
  EXPECT_THAT(ReadRowListFile("emb", path, 1000),
              IsOkAndHoldsRows({1, 3, 5, 7, 100, 101, 102}));
  absl::StatusOr<std::vector<uint64_t>> inline_rows =
      ParseRowList("emb", "3,100-102,7,1,101,5-5,3", 1000);
  ASSERT_TRUE(inline_rows.ok()) << inline_rows.status();
  EXPECT_EQ(*ReadRowListFile("emb", path, 1000), *inline_rows);
}

TEST_F(RowListFileTest, EmptyFilesAndOnlyCommentsAreNoRows) {
  EXPECT_THAT(ReadRowListFile("emb", Write("empty.txt", ""), 10),
              IsOkAndHoldsRows({}));
  EXPECT_THAT(
      ReadRowListFile("emb", Write("notes.txt", "# none\n\n  \r\n#9\n"), 10),
      IsOkAndHoldsRows({}));
  // A comment may be longer than any row line.
  EXPECT_THAT(
      ReadRowListFile(
          "emb", Write("long.txt", "  #" + std::string(100000, 'c') + "\n4"),
          10),
      IsOkAndHoldsRows({4}));
}

TEST_F(RowListFileTest, TextRefusesABadLineNamingItsNumberAndQuotingIt) {
  for (const std::string item : {"x", "-1", "9-7", "1 2", "0x1", "+1", "5-",
                                 "1-2-3", "1.0", "18446744073709551616"}) {
    ExpectRefused(
        "bad.txt", "# header\n0\n" + item + "\r\n4\n",
        " line 3: '" + item + "' is not a row index or an ascending range A-B");
  }
  ExpectRefused("list.txt", "3,17,100-199\n",
                " line 1: '3,17,100-199' is not a row index or an ascending "
                "range A-B (one per line)");
  // Control bytes are escaped; a long line is cut in the quote.
  ExpectRefused("binary.txt", "1\n\x01\x02\x1b[2J\n",
                " line 2: '\\x01\\x02\\x1b[2J' is not a row index or an "
                "ascending range A-B");
  ExpectRefused("long.txt", std::string(200, '7') + "x\n",
                " line 1: '" + std::string(64, '7') +
                    "...' (201 bytes) is not a row index or an ascending "
                    "range A-B");
  ExpectRefused("huge.txt", "2\n" + std::string(1 << 20, '7'),
                " line 2: '" + std::string(64, '7') +
                    "...' (4096 bytes) is longer than 4096 bytes, so no row "
                    "index or range A-B");
}

TEST_F(RowListFileTest, TextRefusesARowPastTheLastNamingTheLine) {
  ExpectRefused("far.txt", "9\n\n8-10\n",
                " line 3: row 10 is past its last row (it has 10 rows)");
  ExpectRefused("far.txt", "0\n18446744073709551615\n",
                " line 2: row 18446744073709551615 is past its last row (it "
                "has 10 rows)");
  ExpectRefused("none.txt", "0\n",
                " line 1: row 0 is past its last row (it "
                "has 0 rows)",
                /*rows=*/0);
}

// A million ranges over four million rows each: merged as they come, so
// this takes about as long as reading the file, not 4e12 steps (or 32 TB).
TEST_F(RowListFileTest, ManyOverlappingRangesAreMergedNotExpandedEach) {
  constexpr uint64_t kRows = 4000000;
  std::string text;
  for (int i = 0; i < 1000000; ++i) {
    text += i % 2 == 0 ? "0-3999999\n" : "1000-3999999\n";
  }
  absl::StatusOr<std::vector<uint64_t>> rows =
      ReadRowListFile("emb", Write("wide.txt", text), kRows);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), kRows);
  EXPECT_EQ(rows->front(), 0u);
  EXPECT_EQ(rows->back(), kRows - 1);
  // Descending single rows, each once: every merge keeps them all apart.
  text.clear();
  for (uint64_t row = kRows; row > 0; row -= 2) {
    absl::StrAppend(&text, row - 2, "\n");
  }
  rows = ReadRowListFile("emb", Write("every_other.txt", text), kRows);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), kRows / 2);
  for (size_t i = 0; i < rows->size(); ++i) ASSERT_EQ((*rows)[i], 2 * i);
}

TEST_F(RowListFileTest, NpyOfEveryIntegerDtypeAndHeaderVersion) {
  const std::vector<int64_t> values = {5, 0, 127, 3, 5, 99};
  for (const int major : {1, 2, 3}) {
    for (const std::string descr :
         {"<i1", "|i1", ">i1", "<u1", "|u1", ">u1", "<i2", ">i2", "<u2", ">u2",
          "<i4", ">i4", "<u4", ">u4", "<i8", ">i8", "<u8", ">u8"}) {
      const size_t bytes = static_cast<size_t>(descr[2] - '0');
      for (const std::string fortran : {"False", "True"}) {
        const std::string path = Write(
            "rows.npy", Npy(Dict(descr, "(6,)", fortran),
                            Elements(values, bytes, descr[0] == '>'), major));
        EXPECT_THAT(ReadRowListFile("emb", path, 128),
                    IsOkAndHoldsRows({0, 3, 5, 99, 127}))
            << descr << " version " << major;
      }
    }
  }
  // An empty array is no rows; NumPy's "(0,)" and an older "(0L,)".
  EXPECT_THAT(ReadRowListFile(
                  "emb", Write("none.npy", Npy(Dict("<i8", "(0,)"), "")), 10),
              IsOkAndHoldsRows({}));
  EXPECT_THAT(
      ReadRowListFile(
          "emb",
          Write("old.npy", Npy(Dict("<i8", "(2L,)"), Elements({4, 2}, 8))), 10),
      IsOkAndHoldsRows({2, 4}));
  // Double quotes and no trailing comma or padding are Python too.
  EXPECT_THAT(
      ReadRowListFile(
          "emb",
          Write(
              "tight.npy",
              Npy("{\"shape\":(1,),\"descr\":\"<u2\",\"fortran_order\":False}",
                  Elements({7}, 2), 1, /*pad=*/false)),
          10),
      IsOkAndHoldsRows({7}));
}

// The magic decides, not the name: a .txt that is a .npy is read as one.
TEST_F(RowListFileTest, NpyIsKnownByItsMagic) {
  EXPECT_THAT(
      ReadRowListFile(
          "emb",
          Write("rows.txt", Npy(Dict("<i4", "(2,)"), Elements({8, 1}, 4))), 10),
      IsOkAndHoldsRows({1, 8}));
  for (const std::string name : {"rows.npy", "ROWS.NPY"}) {
    ExpectRefused(name, "1\n2\n",
                  ": it is named .npy but does not start with the .npy magic "
                  "\\x93NUMPY (a text list needs another name)");
  }
}

// Elements split across the reader's blocks: a header that leaves the data
// at an odd offset, and more than a block of 8-byte elements.
TEST_F(RowListFileTest, NpyElementsSplitAcrossReadsAreWhole) {
  constexpr uint64_t kRows = 1 << 20;
  std::vector<int64_t> values;
  for (int64_t i = 0; i < 200000; ++i) values.push_back((i * 7919) % kRows);
  const std::string bytes =
      Npy(Dict(">u8", "(200000,)") + " ", Elements(values, 8, true), 1,
          /*pad=*/false);
  ASSERT_EQ((bytes.size() - 200000 * 8) % 2, 1u);
  absl::StatusOr<std::vector<uint64_t>> rows =
      ReadRowListFile("emb", Write("split.npy", bytes), kRows);
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::vector<uint64_t> expected(values.begin(), values.end());
  std::sort(expected.begin(), expected.end());
  expected.erase(std::unique(expected.begin(), expected.end()), expected.end());
  EXPECT_EQ(*rows, expected);
}

TEST_F(RowListFileTest, NpyRefusesNegativeAndPastTheEndNamingTheElement) {
  ExpectRefused("neg.npy", Npy(Dict("<i2", "(3,)"), Elements({1, 2, -5}, 2)),
                " element 2 (from 0): -5 is negative, not a row index");
  ExpectRefused("neg.npy", Npy(Dict("|i1", "(1,)"), Elements({-128}, 1)),
                " element 0 (from 0): -128 is negative, not a row index");
  ExpectRefused(
      "neg.npy", Npy(Dict(">i8", "(2,)"), Elements({0, INT64_MIN}, 8, true)),
      " element 1 (from 0): -9223372036854775808 is negative, not a row "
      "index");
  ExpectRefused("far.npy", Npy(Dict("<i4", "(3,)"), Elements({9, 0, 10}, 4)),
                " element 2 (from 0): row 10 is past its last row (it has 10 "
                "rows)");
  // An unsigned 8-byte value past INT64_MAX is a row like any other.
  ExpectRefused(
      "far.npy", Npy(Dict("<u8", "(1,)"), Elements({INT64_MIN}, 8)),
      " element 0 (from 0): row 9223372036854775808 is past its last row "
      "(it has 10 rows)");
}

TEST_F(RowListFileTest, NpyRefusesOtherDtypesAndShapes) {
  const std::string data = Elements({1, 2}, 8);
  for (const std::string descr :
       {"<f8", "<f4", "|b1", "<i3", "<i16", "|i8", "<U4", "|O", "i8", "=i8",
        "<c16", "<M8[s]", ""}) {
    ExpectRefused("dtype.npy", Npy(Dict(descr, "(2,)"), data),
                  ": it holds dtype '" + descr +
                      "': row indices must be integers (<i1, <i2, <i4, <i8, "
                      "<u1, <u2, <u4, <u8, or the same big-endian with >)");
  }
  ExpectRefused("scalar.npy", Npy(Dict("<i8", "()"), Elements({1}, 8)),
                ": it holds a 0-D array of shape () (a scalar): --dirty-rows "
                "takes a 1-D array of row indices");
  ExpectRefused("matrix.npy", Npy(Dict("<i8", "(1, 2)"), data),
                ": it holds a 2-D array of shape (1, 2): --dirty-rows takes a "
                "1-D array of row indices");
  ExpectRefused("matrix.npy", Npy(Dict("<i8", "(2, 1)", "True"), data),
                ": it holds a 2-D array of shape (2, 1): --dirty-rows takes a "
                "1-D array of row indices");
}

TEST_F(RowListFileTest, NpyRefusesDataThatDoesNotMatchTheShape) {
  ExpectRefused("short.npy", Npy(Dict("<i8", "(4,)"), Elements({1, 2, 3}, 8)),
                ": it ends after 24 of the 32 data bytes its .npy header "
                "gives (truncated)");
  ExpectRefused("short.npy",
                Npy(Dict("<i8", "(4,)"), Elements({1, 2, 3}, 8) + "\x01"),
                ": it ends after 25 of the 32 data bytes its .npy header "
                "gives (truncated)");
  ExpectRefused("long.npy",
                Npy(Dict("<i4", "(2,)"), Elements({1, 2}, 4) + "\n"),
                ": it holds more than the 8 data bytes its .npy header gives");
  // A shape no file could hold is refused at once, not read for ever.
  ExpectRefused("vast.npy", Npy(Dict("<i8", "(2305843009213693952,)"), ""),
                ": its .npy shape (2305843009213693952,) of 8-byte items is "
                "larger than any file");
  ExpectRefused("vast.npy", Npy(Dict("<u1", "(1000000000000,)"), "\x01"),
                ": it ends after 1 of the 1000000000000 data bytes its .npy "
                "header gives (truncated)");
}

TEST_F(RowListFileTest, NpyRefusesMalformedPreambles) {
  ExpectRefused("magic.npy", "\x93NUMPY", ": it ends inside its .npy preamble");
  ExpectRefused("magic.npy", std::string("\x93NUMPY\x01\x00\x10", 9),
                ": it ends inside its .npy preamble");
  ExpectRefused("version.npy", std::string("\x93NUMPY\x04\x00\x00\x00", 10),
                ": it has .npy format version 4.0; only 1.0, 2.0 and 3.0 are "
                "read");
  ExpectRefused("version.npy", std::string("\x93NUMPY\x01\x01\x00\x00", 10),
                ": it has .npy format version 1.1; only 1.0, 2.0 and 3.0 are "
                "read");
  // The length field says 118 bytes of header; 20 are there.
  ExpectRefused("cut.npy", Npy(Dict("<i8", "(1,)"), "").substr(0, 10 + 20),
                ": it ends inside its .npy header (118 bytes, 20 present)");
  // A hostile length is refused before anything that long is read.
  ExpectRefused("long.npy",
                std::string("\x93NUMPY\x02\x00\x01\x00\x01\x00{", 13),
                ": its .npy header of 65537 bytes is longer than the 65536 "
                "read");
  ExpectRefused("long.npy",
                std::string("\x93NUMPY\x03\x00\xff\xff\xff\xff{", 13),
                ": its .npy header of 4294967295 bytes is longer than the "
                "65536 read");
  const std::string not_a_dict =
      ": its .npy header is not a dict of 'descr', 'fortran_order' and "
      "'shape': ";
  const std::pair<std::string, std::string> dicts[] = {
      {"__import__('os').system('x')", "expected '{' at byte 0 of"},
      {"{'descr': '<i8', 'fortran_order': False}", "no 'shape' at byte"},
      {"{'descr': '<i8', 'shape': (1,)}", "no 'fortran_order'"},
      {"{'fortran_order': False, 'shape': (1,)}", "no 'descr'"},
      {"{'descr': '<i8', 'descr': '<i8', 'fortran_order': False, 'shape': "
       "(1,)}",
       "a key 'descr' that is unknown or repeated"},
      {"{'descr': '<i8', 'fortran_order': False, 'shape': (1,), 'x': 1}",
       "a key 'x' that is unknown or repeated"},
      {"{'descr': [('a', '<i8')], 'fortran_order': False, 'shape': (1,)}",
       "a structured dtype (a list of fields)"},
      {"{'descr': '<i8', 'fortran_order': Maybe, 'shape': (1,)}",
       "expected True or False"},
      {"{'descr': '<i8', 'fortran_order': False, 'shape': (-1,)}",
       "expected a dimension (a non-negative integer)"},
      {"{'descr': '<i8', 'fortran_order': False, 'shape': (1,)} x",
       "bytes after the dict"},
      {"{'descr': '<i\\x38', 'fortran_order': False, 'shape': (1,)}",
       "a string with an escape"},
      {"{'descr': '<i8", "an unterminated string"},
      {"{'descr' '<i8'}", "expected ':'"},
      {"{'descr': '<i8', 'fortran_order': False, 'shape': (1,2",
       "expected ')'"},
      {std::string("{'descr': '<i8'\0}", 17), "expected '}'"},
      {"", "expected '{' at byte 0 of ''"},
  };
  for (const auto& [dict, why] : dicts) {
    const std::string path =
        Write("dict.npy", Npy(dict, Elements({1}, 8), 1, /*pad=*/false));
    absl::StatusOr<std::vector<uint64_t>> read =
        ReadRowListFile("emb", path, 10);
    ASSERT_FALSE(read.ok()) << dict;
    EXPECT_TRUE(absl::IsInvalidArgument(read.status())) << read.status();
    EXPECT_THAT(
        read.status().message(),
        HasSubstr(absl::StrCat("--dirty-rows emb: '", path, "'", not_a_dict)))
        << dict;
    EXPECT_THAT(read.status().message(), HasSubstr(why)) << dict;
  }
}

// Every cut of a good .npy short of its end is refused, and every byte of
// it changed to each of a few values gives rows or INVALID_ARGUMENT, never
// a crash, another error or rows past the tensor's.
TEST_F(RowListFileTest, EveryCutOrChangedByteOfANpyIsReadSafely) {
  const std::string good =
      Npy(Dict("<i8", "(3,)"), Elements({1, 9, 4}, 8), /*major=*/2);
  for (size_t size = 0; size < good.size(); ++size) {
    absl::StatusOr<std::vector<uint64_t>> read = ReadRowListFile(
        "emb", Write(absl::StrCat("cut", size, ".npy"), good.substr(0, size)),
        10);
    EXPECT_TRUE(absl::IsInvalidArgument(read.status())) << size;
  }
  for (size_t at = 0; at < good.size(); ++at) {
    for (const char byte : {'\0', '\x80', '\xff', '(', '\'', '9'}) {
      std::string changed = good;
      changed[at] = byte;
      absl::StatusOr<std::vector<uint64_t>> read = ReadRowListFile(
          "emb",
          Write(absl::StrCat("changed", at, "_", int{byte}, ".npy"), changed),
          10);
      if (read.ok()) {
        EXPECT_TRUE(std::is_sorted(read->begin(), read->end()));
        for (const uint64_t row : *read) EXPECT_LT(row, 10u) << at;
      } else {
        EXPECT_TRUE(absl::IsInvalidArgument(read.status()))
            << at << ": " << read.status();
      }
    }
  }
}

TEST_F(RowListFileTest, RefusesAMissingFileADirectoryAndAnEmptyName) {
  const std::string missing = dir_ + "/missing.txt";
  absl::StatusOr<std::vector<uint64_t>> read =
      ReadRowListFile("emb", missing, 10);
  EXPECT_TRUE(absl::IsNotFound(read.status())) << read.status();
  EXPECT_EQ(read.status().message(), "--dirty-rows emb: cannot open '" +
                                         missing +
                                         "': No such file or directory");

  read = ReadRowListFile("emb", dir_, 10);
  EXPECT_TRUE(absl::IsInvalidArgument(read.status())) << read.status();
  EXPECT_EQ(read.status().message(),
            "--dirty-rows emb: '" + dir_ +
                "': it is a directory, not a file of rows");

  // A path is shown as typed, UTF-8 included; control bytes escaped.
  const std::string odd = Write("r\xc3\xa9\x1b.txt", "x\n");
  read = ReadRowListFile("emb", odd, 10);
  EXPECT_EQ(read.status().message(),
            "--dirty-rows emb: '" + dir_ +
                "/r\xc3\xa9\\x1b.txt' line 1: 'x' is not a row index or an "
                "ascending range A-B");

  read = ReadRowListFile("emb", "", 10);
  EXPECT_TRUE(absl::IsInvalidArgument(read.status())) << read.status();
  EXPECT_EQ(read.status().message(),
            "--dirty-rows emb: '@' names no file (NAME=@FILE)");

  // Without read permission (root reads it anyway).
  const std::string locked = Write("locked.txt", "1\n");
  ASSERT_EQ(::chmod(locked.c_str(), 0), 0);
  read = ReadRowListFile("emb", locked, 10);
  if (::geteuid() != 0) {
    EXPECT_TRUE(absl::IsPermissionDenied(read.status())) << read.status();
    EXPECT_EQ(read.status().message(), "--dirty-rows emb: cannot open '" +
                                           locked + "': Permission denied");
  } else {
    EXPECT_THAT(read, IsOkAndHoldsRows({1}));
  }
}

// A pipe (e.g. bash's <(...)) is read like a file, to its end.
TEST_F(RowListFileTest, ReadsAPipe) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::thread writer([fd = fds[1]] {
    std::string text;
    for (int row = 0; row < 100000; ++row) absl::StrAppend(&text, row, "\n");
    const char* at = text.data();
    size_t left = text.size();
    while (left > 0) {
      const ssize_t put = ::write(fd, at, left);
      if (put <= 0) break;
      at += put;
      left -= static_cast<size_t>(put);
    }
    ::close(fd);
  });
  absl::StatusOr<std::vector<uint64_t>> read =
      ReadRowListFile("emb", absl::StrCat("/dev/fd/", fds[0]), 100000);
  writer.join();
  ::close(fds[0]);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->size(), 100000u);
  EXPECT_EQ(read->back(), 99999u);
}

// ParseDirtyRows reads NAME=@FILE, and takes NAME=ROWS inline beside it.
TEST_F(RowListFileTest, DirtyRowsTakeAFileForOneTensorAndAListForAnother) {
  std::vector<client::TensorData> tensors(2);
  tensors[0].name = "a.bin";
  tensors[0].global_shape = {4, 8};
  tensors[1].name = "b.bin";
  tensors[1].global_shape = {100, 8};
  const std::string path = Write("b.txt", "50-52\n7\n");
  absl::StatusOr<GivenRows> given =
      ParseDirtyRows({"a.bin=3,1", "b.bin=@" + path}, tensors);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_THAT((*given)[0], Optional(ElementsAre(1, 3)));
  EXPECT_THAT((*given)[1], Optional(ElementsAre(7, 50, 51, 52)));

  // The file is checked against its own tensor's rows.
  given = ParseDirtyRows({"a.bin=@" + path}, tensors);
  EXPECT_EQ(given.status().message(),
            "--dirty-rows a.bin: '" + path +
                "' line 1: row 52 is past its last row (it has 4 rows)");
  given = ParseDirtyRows({"a.bin=@"}, tensors);
  EXPECT_EQ(given.status().message(),
            "--dirty-rows a.bin: '@' names no file (NAME=@FILE)");
  given = ParseDirtyRows({"b.bin=@" + path, "b.bin=1"}, tensors);
  EXPECT_EQ(given.status().message(),
            "--dirty-rows names 'b.bin' twice; list its rows once");
}

}  // namespace
}  // namespace ckpt::cli
