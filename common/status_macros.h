// Early-return helpers for absl::Status / absl::StatusOr code paths.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CKPT_INTERNAL_CONCAT_INNER(a, b) a##b
#define CKPT_INTERNAL_CONCAT(a, b) CKPT_INTERNAL_CONCAT_INNER(a, b)

// Returns the status of `expr` from the enclosing function if it is not OK.
#define CKPT_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status ckpt_status_ = (expr);        \
    if (!ckpt_status_.ok()) return ckpt_status_; \
  } while (0)

// `lhs = value of expr`, or returns its error status.
#define CKPT_ASSIGN_OR_RETURN(lhs, expr)                                    \
  CKPT_INTERNAL_ASSIGN_OR_RETURN(CKPT_INTERNAL_CONCAT(ckpt_sor_, __LINE__), \
                                 lhs, expr)

// `lhs` is a declaration or an lvalue, so it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define CKPT_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)
