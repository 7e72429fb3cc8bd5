// CKPT_TESTING_SANITIZED: 1 in a build under AddressSanitizer or
// ThreadSanitizer (GCC's __SANITIZE_*__ macros, clang's __has_feature), else
// 0; for tests whose time or memory bounds need slack there.
#pragma once

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CKPT_TESTING_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define CKPT_TESTING_SANITIZED 1
#endif
#endif

#ifndef CKPT_TESTING_SANITIZED
#define CKPT_TESTING_SANITIZED 0
#endif
