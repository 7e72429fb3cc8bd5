#include "client/python/exit_status.h"

#include <Python.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

namespace ckpt::client {
namespace {

std::atomic<bool> g_hook_registered{false};
std::atomic<int> g_exit_status{0};

// Runs last in Py_FinalizeEx; no Python API may be used here.
void ExitWithRecordedStatus() {
  const int status = g_exit_status.load();
  if (status == 0) return;
  std::fflush(nullptr);
  _exit(status);
}

}  // namespace

bool RegisterExitStatusHook() {
  if (g_hook_registered.load()) return true;
  if (Py_AtExit(&ExitWithRecordedStatus) != 0) return false;
  g_hook_registered.store(true);
  return true;
}

bool SetExitStatusAtFinalize(int status) {
  if (!g_hook_registered.load()) return false;
  g_exit_status.store(status);
  return true;
}

}  // namespace ckpt::client
