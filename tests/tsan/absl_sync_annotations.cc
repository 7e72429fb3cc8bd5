// Linked into every executable of the ThreadSanitizer build (CKPT_TSAN).
//
// Debian's Abseil is a shared library built without ThreadSanitizer, so
// TSan cannot see absl::Mutex lock and unlock (plain atomics and futexes in
// uninstrumented code) and would report every ABSL_GUARDED_BY member as a
// race. These definitions interpose the library's Mutex and CondVar entry
// points (the executable's definitions win, for our calls and for gRPC's,
// which reach Abseil through the PLT), call the real ones, and tell TSan
// about the happens-before each establishes: an unlock releases the
// mutex's address, a lock acquires it, and a wait does both. Reader locks
// are treated as locks, which can only hide a race between two readers.
// absl::Notification gets the same treatment (its waits may skip the lock).
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();

namespace {

// The library's definition of `mangled`, found past this executable.
template <typename Fn>
Fn Real(const char* mangled) {
  void* symbol = dlsym(RTLD_NEXT, mangled);
  if (symbol == nullptr) {
    std::fprintf(stderr, "tsan_absl_sync: %s not found\n", mangled);
    std::abort();
  }
  return reinterpret_cast<Fn>(symbol);
}

using MutexFn = void (*)(absl::Mutex*);
using TryFn = bool (*)(absl::Mutex*);
using WhenFn = void (*)(absl::Mutex*, const absl::Condition&);
using WhenTimeoutFn = bool (*)(absl::Mutex*, const absl::Condition&,
                               absl::Duration);
using WhenDeadlineFn = bool (*)(absl::Mutex*, const absl::Condition&,
                                absl::Time);
using WaitFn = void (*)(absl::CondVar*, absl::Mutex*);
using WaitTimeoutFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Duration);
using WaitDeadlineFn = bool (*)(absl::CondVar*, absl::Mutex*, absl::Time);
using NotifyFn = void (*)(absl::Notification*);
using AwaitNoteFn = void (*)(const absl::Notification*);
using AwaitNoteTimeoutFn = bool (*)(const absl::Notification*, absl::Duration);
using AwaitNoteDeadlineFn = bool (*)(const absl::Notification*, absl::Time);

// Ignores this thread's memory accesses while it is inside Abseil, where a
// lock or unlock may evaluate conditions of waiting threads (absl::Condition
// objects on their stacks, and the guarded state they read with the mutex
// held) under the library's own invisible spinlock.
class IgnoreAccesses {
 public:
  IgnoreAccesses() { __tsan_ignore_thread_begin(); }
  ~IgnoreAccesses() { __tsan_ignore_thread_end(); }
  IgnoreAccesses(const IgnoreAccesses&) = delete;
  IgnoreAccesses& operator=(const IgnoreAccesses&) = delete;
};

// Calls the real function inside IgnoreAccesses.
template <typename Fn, typename... Args>
auto Call(Fn fn, Args&&... args) {
  IgnoreAccesses ignore;
  return fn(std::forward<Args>(args)...);
}

#define CKPT_REAL(type, mangled)                \
  static const type real = Real<type>(mangled); \
  (void)0

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  CKPT_REAL(MutexFn, "_ZN4absl7debian35Mutex4LockEv");
  Call(real, this);
  __tsan_acquire(this);
}

void Mutex::ReaderLock() {
  CKPT_REAL(MutexFn, "_ZN4absl7debian35Mutex10ReaderLockEv");
  Call(real, this);
  __tsan_acquire(this);
}

bool Mutex::TryLock() {
  CKPT_REAL(TryFn, "_ZN4absl7debian35Mutex7TryLockEv");
  const bool locked = Call(real, this);
  if (locked) __tsan_acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  CKPT_REAL(TryFn, "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  const bool locked = Call(real, this);
  if (locked) __tsan_acquire(this);
  return locked;
}

void Mutex::Unlock() {
  CKPT_REAL(MutexFn, "_ZN4absl7debian35Mutex6UnlockEv");
  __tsan_release(this);
  Call(real, this);
}

void Mutex::ReaderUnlock() {
  CKPT_REAL(MutexFn, "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  __tsan_release(this);
  Call(real, this);
}

void Mutex::LockWhen(const Condition& cond) {
  CKPT_REAL(WhenFn, "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  Call(real, this, cond);
  __tsan_acquire(this);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  CKPT_REAL(WhenFn, "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Call(real, this, cond);
  __tsan_acquire(this);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  CKPT_REAL(WhenTimeoutFn,
            "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_"
            "9ConditionENS0_8DurationE");
  const bool met = Call(real, this, cond, timeout);
  __tsan_acquire(this);  // held either way
  return met;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  CKPT_REAL(WhenDeadlineFn,
            "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_"
            "9ConditionENS0_4TimeE");
  const bool met = Call(real, this, cond, deadline);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  CKPT_REAL(WhenTimeoutFn,
            "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_"
            "9ConditionENS0_8DurationE");
  const bool met = Call(real, this, cond, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  CKPT_REAL(WhenDeadlineFn,
            "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_"
            "9ConditionENS0_4TimeE");
  const bool met = Call(real, this, cond, deadline);
  __tsan_acquire(this);
  return met;
}

void Mutex::Await(const Condition& cond) {
  CKPT_REAL(WhenFn, "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  __tsan_release(this);
  Call(real, this, cond);
  __tsan_acquire(this);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  CKPT_REAL(WhenTimeoutFn,
            "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_"
            "9ConditionENS0_8DurationE");
  __tsan_release(this);
  const bool met = Call(real, this, cond, timeout);
  __tsan_acquire(this);
  return met;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  CKPT_REAL(WhenDeadlineFn,
            "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_"
            "9ConditionENS0_4TimeE");
  __tsan_release(this);
  const bool met = Call(real, this, cond, deadline);
  __tsan_acquire(this);
  return met;
}

void CondVar::Wait(Mutex* mu) {
  CKPT_REAL(WaitFn, "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  __tsan_release(mu);
  Call(real, this, mu);
  __tsan_acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  CKPT_REAL(WaitTimeoutFn,
            "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_"
            "8DurationE");
  __tsan_release(mu);
  const bool timed_out = Call(real, this, mu, timeout);
  __tsan_acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  CKPT_REAL(WaitDeadlineFn,
            "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_"
            "4TimeE");
  __tsan_release(mu);
  const bool timed_out = Call(real, this, mu, deadline);
  __tsan_acquire(mu);
  return timed_out;
}

// A Notification's waiter may return on the library's atomic flag alone,
// without taking the mutex, so the Mutex annotations above miss that
// hand-off: Notify releases the notification's address and a wait that saw
// it acquires it. (HasBeenNotified is inline; ckpt waits through these.)
void Notification::Notify() {
  CKPT_REAL(NotifyFn, "_ZN4absl7debian312Notification6NotifyEv");
  __tsan_release(this);
  Call(real, this);
}

void Notification::WaitForNotification() const {
  CKPT_REAL(AwaitNoteFn,
            "_ZNK4absl7debian312Notification19WaitForNotificationEv");
  Call(real, this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  CKPT_REAL(
      AwaitNoteTimeoutFn,
      "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_"
      "8DurationE");
  const bool notified = Call(real, this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  CKPT_REAL(
      AwaitNoteDeadlineFn,
      "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_"
      "4TimeE");
  const bool notified = Call(real, this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
