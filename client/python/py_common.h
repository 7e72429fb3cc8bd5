// What the binding files of ckpt._ckpt share: the status-to-exception
// rule, buffer-protocol views of caller memory, and the conversions of
// domain values every binding returns (dtypes, checkpoint records).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/python/status_exception.h"
#include "client/types.h"
#include "common/manifest.h"

namespace ckpt::client {

namespace py = pybind11;

// Sets ckpt.Error, the exception of statuses other than INVALID_ARGUMENT
// and NOT_FOUND; called once at module import.
void SetErrorType(PyObject* type);

// ThrowStatus (status_exception.h) of INVALID_ARGUMENT: a ValueError.
[[noreturn]] void ThrowValueError(const std::string& message);

inline void CheckOk(const absl::Status& status) {
  if (!status.ok()) ThrowStatus(status);
}

template <typename T>
T ValueOrThrow(absl::StatusOr<T> result) {
  if (!result.ok()) ThrowStatus(result.status());
  return *std::move(result);
}

// A buffer-protocol view held for as long as the C++ side reads or writes
// the bytes; the view keeps its exporter (numpy array, bytes, ...) alive.
// ValueError naming `what` when the object has no C-contiguous buffer (or
// no writable one, when `writable`).
class BufferView {
 public:
  BufferView(const py::handle& object, bool writable, const std::string& what);
  ~BufferView() { PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;

  char* data() const { return static_cast<char*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

double UnixSecondsOf(absl::Time time);
absl::Time TimeOfUnixSeconds(double seconds);

// The numpy dtype holding a ckpt dtype's elements. bfloat16 has none: its
// elements come back as uint16 and the caller reinterprets them.
py::dtype NumpyDType(DType dtype);

// A numpy array of `tensor`'s bytes shaped as its box, without a copy: it
// takes over the tensor's storage (the last array viewing it frees it).
py::array ArrayOwning(RestoredTensor& tensor);

// One tensor of a save, as Python passes it:
// (name, dtype, global_shape, offsets, lengths, buffer).
using PyTensor =
    std::tuple<std::string, std::string, std::vector<int64_t>,
               std::vector<int64_t>, std::vector<int64_t>, py::object>;

// `tensor` as TensorData over its buffer's bytes, whose view is appended
// to `views` (keep them until the bytes are read). ValueError for an
// unknown dtype or an object without a C-contiguous buffer.
TensorData TensorFromPython(const PyTensor& tensor,
                            std::vector<std::unique_ptr<BufferView>>* views);

// A checkpoint header as the dict Client.list_checkpoints returns.
py::dict RecordToDict(const CheckpointRecord& record);

// A save's result as the dict Client.save_shard returns.
py::dict SaveResultToDict(const SaveResult& saved);

}  // namespace ckpt::client
