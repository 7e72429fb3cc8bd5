#include "client/python/py_common.h"

#include <pybind11/stl.h>

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace ckpt::client {
namespace {

// ckpt.Error, created at module import.
PyObject* g_error_type = nullptr;

}  // namespace

void SetErrorType(PyObject* type) { g_error_type = type; }

void ThrowStatus(const absl::Status& status) {
  PyObject* type = g_error_type;
  if (status.code() == absl::StatusCode::kInvalidArgument) {
    type = PyExc_ValueError;
  } else if (status.code() == absl::StatusCode::kNotFound) {
    type = PyExc_KeyError;
  }
  const std::string code = absl::StatusCodeToString(status.code());
  const std::string message(status.message());
  py::object exc = py::reinterpret_borrow<py::object>(type)(
      absl::StrCat(code, ": ", message));
  exc.attr("code") = code;
  exc.attr("message") = message;
  PyErr_SetObject(type, exc.ptr());
  throw py::error_already_set();
}

void ThrowValueError(const std::string& message) {
  ThrowStatus(absl::InvalidArgumentError(message));
}

BufferView::BufferView(const py::handle& object, bool writable,
                       const std::string& what) {
  const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(object.ptr(), &view_, flags) != 0) {
    PyErr_Clear();
    ThrowValueError(absl::StrCat(
        what, ": needs an object exposing a C-contiguous",
        writable ? " writable" : "", " buffer (numpy array, bytes, ...)"));
  }
}

TensorData TensorFromPython(const PyTensor& given,
                            std::vector<std::unique_ptr<BufferView>>* views) {
  const auto& [name, dtype_name, global_shape, offsets, lengths, buffer] =
      given;
  TensorData tensor;
  tensor.name = name;
  tensor.dtype = ValueOrThrow(ParseDType(dtype_name));
  tensor.global_shape = global_shape;
  tensor.box = Box{.offsets = offsets, .lengths = lengths};
  views->push_back(std::make_unique<BufferView>(
      buffer, /*writable=*/false, absl::StrCat("tensor '", name, "'")));
  tensor.bytes =
      absl::string_view(views->back()->data(), views->back()->size());
  return tensor;
}

double UnixSecondsOf(absl::Time time) {
  return absl::ToDoubleSeconds(time - absl::UnixEpoch());
}

absl::Time TimeOfUnixSeconds(double seconds) {
  return absl::UnixEpoch() + absl::Seconds(seconds);
}

py::dtype NumpyDType(DType dtype) {
  switch (dtype) {
    case DType::kUint8:
      return py::dtype("uint8");
    case DType::kInt8:
      return py::dtype("int8");
    case DType::kInt16:
      return py::dtype("int16");
    case DType::kInt32:
      return py::dtype("int32");
    case DType::kInt64:
      return py::dtype("int64");
    case DType::kFloat16:
      return py::dtype("float16");
    case DType::kBFloat16:
      return py::dtype("uint16");
    case DType::kFloat32:
      return py::dtype("float32");
    case DType::kFloat64:
      return py::dtype("float64");
    case DType::kBool:
      return py::dtype("bool");
    case DType::kComplex64:
      return py::dtype("complex64");
    case DType::kComplex128:
      return py::dtype("complex128");
  }
  return py::dtype("uint8");
}

py::array ArrayOwning(RestoredTensor& tensor) {
  auto* owner = new std::shared_ptr<void>(std::move(tensor.storage));
  py::capsule base(
      owner, [](void* p) { delete static_cast<std::shared_ptr<void>*>(p); });
  return py::array(NumpyDType(tensor.entry.dtype), tensor.entry.box.lengths,
                   tensor.bytes.data(), base);
}

py::dict RecordToDict(const CheckpointRecord& record) {
  py::dict dict;
  dict["job"] = record.job;
  dict["step"] = record.step;
  dict["state"] = std::string(CheckpointStateName(record.state));
  dict["world_size"] = record.world_size;
  dict["metrics"] = record.metadata.metrics;
  dict["tags"] = record.metadata.tags;
  dict["writer_time"] =
      record.metadata.writer_time.has_value()
          ? py::object(py::float_(UnixSecondsOf(*record.metadata.writer_time)))
          : py::object(py::none());
  dict["create_time"] = UnixSecondsOf(record.create_time);
  dict["commit_time"] = UnixSecondsOf(record.commit_time);
  dict["logical_bytes"] = record.logical_bytes;
  dict["committed_ranks"] = record.committed_ranks;
  dict["pinned"] = record.pinned;
  dict["kind"] = std::string(CheckpointKindName(record));
  dict["base_steps"] = record.base_steps;
  dict["bytes_added"] = record.bytes_added;
  return dict;
}

py::dict SaveResultToDict(const SaveResult& saved) {
  py::dict dict;
  dict["logical_bytes"] = saved.logical_bytes;
  dict["chunks_total"] = saved.chunks_total;
  dict["chunks_sent"] = saved.chunks_sent;
  dict["bytes_sent"] = saved.bytes_sent;
  dict["checkpoint_committed"] = saved.checkpoint_committed;
  dict["checkpoint"] = RecordToDict(saved.checkpoint);
  py::dict quantized;
  for (const auto& [name, quantization] : saved.quantized) {
    py::dict entry;
    entry["bits"] = quantization.bits;
    entry["max_abs_error"] = quantization.max_abs_error;
    entry["relative_l2_error"] = quantization.relative_l2_error;
    quantized[py::str(name)] = entry;
  }
  dict["quantized"] = quantized;
  // Why the server ignored the retention policy passed; None when it did not.
  dict["retention_policy_ignored"] =
      saved.retention_policy_ignored.empty()
          ? py::object(py::none())
          : py::object(py::str(saved.retention_policy_ignored));
  return dict;
}

}  // namespace ckpt::client
