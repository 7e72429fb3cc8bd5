#include "client/python/staging_binding.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/parallel_copy.h"
#include "client/python/py_common.h"

namespace ckpt::client {
namespace {

namespace py = pybind11;

// copy_buffers(destinations, sources, threads): each source's bytes into
// the destination of the same index, on `threads` threads with the GIL
// released. Every buffer is checked (C-contiguous, destinations writable,
// equal sizes) before a byte is copied.
void CopyBuffers(const py::sequence& destinations, const py::sequence& sources,
                 int threads) {
  if (destinations.size() != sources.size()) {
    ThrowValueError(absl::StrCat("copy_buffers: ", destinations.size(),
                                 " destinations for ", sources.size(),
                                 " sources"));
  }
  std::vector<std::unique_ptr<BufferView>> views;
  std::vector<CopySpan> spans;
  views.reserve(2 * sources.size());
  spans.reserve(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    const std::string what = absl::StrCat("copy_buffers: buffer ", i);
    auto& destination = views.emplace_back(
        std::make_unique<BufferView>(destinations[i], true, what));
    auto& source = views.emplace_back(
        std::make_unique<BufferView>(sources[i], false, what));
    if (destination->size() != source->size()) {
      ThrowValueError(absl::StrCat(what, ": destination of ",
                                   destination->size(), " bytes for ",
                                   source->size(), " source bytes"));
    }
    spans.push_back({destination->data(), source->data(), source->size()});
  }
  py::gil_scoped_release release;
  ParallelCopy(spans, threads);
}

}  // namespace

void RegisterStaging(py::module_& module) {
  module.def("copy_buffers", &CopyBuffers, py::arg("destinations"),
             py::arg("sources"), py::arg("threads") = 0,
             "Copies each source buffer's bytes into the destination buffer "
             "of the same index (C-contiguous, the same size; destinations "
             "writable) on `threads` threads (0: the machine's, at most 8) "
             "with the GIL released. ValueError before anything is copied "
             "when a buffer does not fit.");
  module.def("copy_threads", &CopyThreads, py::arg("threads") = 0,
             "The number of threads copy_buffers(threads=...) may use.");
}

}  // namespace ckpt::client
