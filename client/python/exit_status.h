// The exit status a Python process ends with once the interpreter has
// finalised, for failures Python learns of too late to set it itself.
//
// An atexit handler cannot change a Python process's exit status (an
// exception there is only printed), and os._exit from one skips the atexit
// handlers registered before it and the final flush of stdio. So
// ckpt.manager's atexit handler, having printed a failed async save that no
// call raised, records status 1 here, and a Py_AtExit function registered
// at import ends the process with _exit(status) at the very end of
// Py_FinalizeEx: after every atexit handler, thread join and stdio flush.
// C-level atexit handlers and static destructors do not run then.
// Not for embedded interpreters: it would end the embedding process.
#ifndef CKPT_CLIENT_PYTHON_EXIT_STATUS_H_
#define CKPT_CLIENT_PYTHON_EXIT_STATUS_H_

namespace ckpt::client {

// Registers the Py_AtExit function (once). False when CPython's table of
// such functions is full; SetExitStatusAtFinalize then fails too.
bool RegisterExitStatusHook();

// Makes the process exit with `status` (non-zero) once Python has
// finalised. Returns false when the hook is not registered: the caller
// must end the process itself.
bool SetExitStatusAtFinalize(int status);

}  // namespace ckpt::client

#endif  // CKPT_CLIENT_PYTHON_EXIT_STATUS_H_
