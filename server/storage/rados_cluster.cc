#include "server/storage/rados_cluster.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/storage/rados_io.h"

namespace ckpt::server {

absl::Status RadosStatus(int rc, absl::string_view what) {
  if (rc >= 0) return absl::OkStatus();
  const int err = -rc;
  std::string message =
      absl::StrCat(what, ": ", std::strerror(err), " (errno ", err, ")");
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case ECANCELED:
      return absl::AbortedError(message);
    case EBUSY:
    case ETIMEDOUT:
    case ESHUTDOWN:
    case ENOTCONN:
    case EAGAIN:
      return absl::UnavailableError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(message);
    case EINVAL:
    case ENAMETOOLONG:
    case EMSGSIZE:
    case EFBIG:
      return absl::InvalidArgumentError(message);
    default:
      return absl::InternalError(message);
  }
}

librados::IoCtx IoCtxIn(RadosCluster& cluster, absl::string_view ns) {
  librados::IoCtx io;
  io.dup(cluster.handles().pool);
  io.set_namespace(std::string(ns));
  return io;
}

RadosCluster::RadosCluster(Passkey, RadosOptions options,
                           std::unique_ptr<Handles> handles)
    : options_(std::move(options)), handles_(std::move(handles)) {}

RadosCluster::~RadosCluster() {
  if (handles_ == nullptr) return;
  handles_->pool.close();
  handles_->rados.shutdown();
}

std::string RadosCluster::ClientName() const {
  return absl::StrCat("client.", handles_->rados.get_instance_id());
}

absl::StatusOr<std::unique_ptr<RadosCluster>> RadosCluster::Connect(
    const RadosOptions& options) {
  if (options.conf_path.empty()) {
    return absl::InvalidArgumentError(
        "no Ceph configuration: give --ceph-conf FILE");
  }
  if (options.user.empty() || options.pool.empty()) {
    return absl::InvalidArgumentError(
        "a Ceph user and a pool name must not be empty");
  }
  const std::string where = absl::StrCat("Ceph cluster of ", options.conf_path,
                                         " as client.", options.user);
  auto handles = std::make_unique<Handles>();
  librados::Rados& rados = handles->rados;
  if (int rc = rados.init2(("client." + options.user).c_str(), "ceph", 0);
      rc < 0) {
    return RadosStatus(rc, absl::StrCat(where, ": init"));
  }
  if (int rc = rados.conf_read_file(options.conf_path.c_str()); rc < 0) {
    return RadosStatus(rc, absl::StrCat("reading ", options.conf_path));
  }
  const auto seconds = [](absl::Duration d) {
    return std::to_string(std::max<int64_t>(1, absl::ToInt64Seconds(d)));
  };
  const std::pair<const char*, std::string> settings[] = {
      {"client_mount_timeout", seconds(options.connect_timeout)},
      {"rados_mon_op_timeout", seconds(options.op_timeout)},
      {"rados_osd_op_timeout", seconds(options.op_timeout)},
      // Every server on a host would bind the same client.USER.asok and all
      // but the first print "File exists"; ckpt-server has its own metrics.
      {"admin_socket", ""},
  };
  for (const auto& [name, value] : settings) {
    if (int rc = rados.conf_set(name, value.c_str()); rc < 0) {
      return RadosStatus(rc, absl::StrCat(where, ": setting ", name));
    }
  }
  if (!options.keyring.empty()) {
    if (int rc = rados.conf_set("keyring", options.keyring.c_str()); rc < 0) {
      return RadosStatus(rc,
                         absl::StrCat(where, ": keyring ", options.keyring));
    }
  }
  if (int rc = rados.connect(); rc < 0) {
    absl::Status status = RadosStatus(rc, absl::StrCat(where, ": connect"));
    if (rc == -ETIMEDOUT) {
      return absl::UnavailableError(
          absl::StrCat(status.message(), ": no monitor answered within ",
                       absl::FormatDuration(options.connect_timeout)));
    }
    if (rc == -ENOENT) {
      // librados' word for "no keyring found": say which one it looked for.
      return absl::NotFoundError(absl::StrCat(
          status.message(), ": no keyring with client.", options.user,
          "'s key at ",
          options.keyring.empty()
              ? absl::StrCat("the keyring setting of ", options.conf_path)
              : options.keyring));
    }
    return status;
  }
  if (int rc = rados.ioctx_create(options.pool.c_str(), handles->pool);
      rc < 0) {
    absl::Status status =
        RadosStatus(rc, absl::StrCat(where, ": opening pool ", options.pool));
    rados.shutdown();
    return status;
  }
  return std::make_unique<RadosCluster>(Passkey(), options, std::move(handles));
}

}  // namespace ckpt::server
