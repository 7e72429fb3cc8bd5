#include "server/config/config_file.h"

#include <optional>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/byte_size.h"
#include "common/manifest.h"
#include "common/small_file.h"
#include "common/status_macros.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/exceptions.h"
#include "yaml-cpp/mark.h"
#include "yaml-cpp/parser.h"

namespace ckpt::server {
namespace {

// The parsed document, built from yaml-cpp's events rather than its Node
// API so that nothing is ever expanded: an alias is refused where it
// appears instead of being copied.
struct YamlNode {
  enum class Kind { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  int line = 0;         // 1-based
  bool quoted = false;  // a scalar written in quotes (a string, never a number)
  std::string value;
  // A map's keys and values alternate; a sequence's items.
  std::vector<YamlNode> children;
};

// Builds the tree; remembers the first error and ignores every event after
// it (no exception leaves our code).
class TreeBuilder final : public YAML::EventHandler {
 public:
  const std::optional<std::pair<int, std::string>>& error() const {
    return error_;
  }
  const YamlNode& root() const { return root_; }
  bool has_root() const { return has_root_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents_ > 1) Fail(mark, "more than one YAML document");
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (!CheckAnchor(mark, anchor)) return;
    Add(mark, YamlNode::Kind::kNull);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    Fail(mark, "YAML aliases (*name) are not allowed in a config file");
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag,
                YAML::anchor_t anchor, const std::string& value) override {
    if (!CheckAnchor(mark, anchor) || !CheckTag(mark, tag)) return;
    if (YamlNode* node = Add(mark, YamlNode::Kind::kScalar)) {
      node->quoted = tag == "!";
      node->value = value;
    }
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag,
                       YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, YamlNode::Kind::kSequence);
  }
  void OnSequenceEnd() override { Close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string& tag,
                  YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, YamlNode::Kind::kMap);
  }
  void OnMapEnd() override { Close(); }
  void OnAnchor(const YAML::Mark& mark, const std::string&) override {
    Fail(mark, "YAML anchors (&name) are not allowed in a config file");
  }

  void Fail(const YAML::Mark& mark, std::string message) {
    if (!error_.has_value()) error_.emplace(mark.line + 1, std::move(message));
  }

 private:
  bool CheckAnchor(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (anchor == YAML::NullAnchor) return !error_.has_value();
    Fail(mark, "YAML anchors (&name) are not allowed in a config file");
    return false;
  }
  bool CheckTag(const YAML::Mark& mark, const std::string& tag) {
    if (tag == "?" || tag == "!" || tag.empty()) return !error_.has_value();
    Fail(mark, absl::StrCat("YAML tags (", tag,
                            ") are not allowed in a config file"));
    return false;
  }
  void Open(const YAML::Mark& mark, const std::string& tag,
            YAML::anchor_t anchor, YamlNode::Kind kind) {
    if (!CheckAnchor(mark, anchor) || !CheckTag(mark, tag)) return;
    if (open_.size() >= kMaxConfigDepth) {
      Fail(mark,
           absl::StrCat("nested deeper than ", kMaxConfigDepth, " levels"));
      return;
    }
    if (YamlNode* node = Add(mark, kind)) open_.push_back(node);
  }
  void Close() {
    if (!error_.has_value() && !open_.empty()) open_.pop_back();
  }
  // The new node, in its parent (which does not grow again until the node
  // is closed, so the pointer stays valid), or null after an error.
  YamlNode* Add(const YAML::Mark& mark, YamlNode::Kind kind) {
    if (error_.has_value()) return nullptr;
    YamlNode node;
    node.kind = kind;
    node.line = mark.line + 1;
    if (open_.empty()) {
      root_ = std::move(node);
      has_root_ = true;
      return &root_;
    }
    YamlNode* parent = open_.back();
    const bool is_key = parent->kind == YamlNode::Kind::kMap &&
                        parent->children.size() % 2 == 0;
    if (is_key && kind != YamlNode::Kind::kScalar) {
      Fail(mark, "a key must be a plain name");
      return nullptr;
    }
    parent->children.push_back(std::move(node));
    return &parent->children.back();
  }

  int documents_ = 0;
  YamlNode root_;
  bool has_root_ = false;
  std::vector<YamlNode*> open_;
  std::optional<std::pair<int, std::string>> error_;
};

const char* TypeName(SettingType type) {
  switch (type) {
    case SettingType::kString:
      return "a string";
    case SettingType::kBool:
      return "true or false";
    case SettingType::kInt:
      return "a whole number";
    case SettingType::kSeconds:
      return "a number of seconds";
    case SettingType::kBytes:
      return "a byte size";
  }
  return "a value";
}

bool IsSectionOfSomeSetting(absl::string_view prefix) {
  for (const ServerSetting& setting : ServerSettingTable()) {
    if (absl::StartsWith(setting.key, prefix)) return true;
  }
  return false;
}

class SettingsApplier {
 public:
  SettingsApplier(absl::string_view file_name, ServerSettings* settings)
      : file_name_(file_name), settings_(settings) {}

  absl::Status ApplyMap(const YamlNode& map, const std::string& prefix) {
    for (size_t i = 0; i + 1 < map.children.size(); i += 2) {
      const YamlNode& key_node = map.children[i];
      const YamlNode& value = map.children[i + 1];
      const std::string key = prefix + key_node.value;
      if (key_node.value == "<<") {
        return Error(key_node.line, key,
                     "YAML merge keys are not allowed in a config file");
      }
      CKPT_RETURN_IF_ERROR(FirstTime(key_node.line, key, first_line_));
      if (key == kTenantQuotasKey) {
        if (absl::Status status = ApplyTenantQuotas(key_node, value);
            !status.ok()) {
          return status;
        }
        continue;
      }
      const ServerSetting* setting = FindServerSetting(key);
      if (setting == nullptr && value.kind == YamlNode::Kind::kMap &&
          IsSectionOfSomeSetting(key + ".")) {
        if (absl::Status status = ApplyMap(value, key + "."); !status.ok()) {
          return status;
        }
        continue;
      }
      if (setting == nullptr) {
        return Error(key_node.line, key,
                     "unknown key (`ckpt-server --print-config` lists every "
                     "key)");
      }
      if (absl::Status status = ApplyValue(*setting, value); !status.ok()) {
        return Error(key_node.line, key, status.message());
      }
    }
    return absl::OkStatus();
  }

  absl::Status Error(int line, absl::string_view key,
                     absl::string_view message) const {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name_, ":", line, ": ", key, ": ", message));
  }

 private:
  // quotas.tenants: { NAME: { max_stored_bytes: SIZE, max_upload_streams: N
  // } }. Not rows of the table (a map of names), so read here; each field
  // is parsed and checked by the row of its quotas.defaults twin.
  absl::Status ApplyTenantQuotas(const YamlNode& key_node,
                                 const YamlNode& tenants) {
    const std::string prefix = absl::StrCat(kTenantQuotasKey, ".");
    if (tenants.kind != YamlNode::Kind::kMap) {
      return Error(key_node.line, kTenantQuotasKey,
                   "expected a map of tenant names to their quotas ({} for "
                   "none)");
    }
    // Per tenant rather than in first_line_: a tenant may be called
    // "a.max_stored_bytes".
    absl::flat_hash_map<std::string, int> tenant_lines;
    for (size_t i = 0; i + 1 < tenants.children.size(); i += 2) {
      const YamlNode& name_node = tenants.children[i];
      const YamlNode& fields = tenants.children[i + 1];
      const std::string tenant_key = prefix + name_node.value;
      CKPT_RETURN_IF_ERROR(FirstTime(name_node.line, tenant_key, tenant_lines));
      if (absl::Status valid = ValidateTenantName(name_node.value);
          !valid.ok()) {
        return Error(name_node.line, tenant_key, valid.message());
      }
      if (fields.kind != YamlNode::Kind::kMap) {
        return Error(name_node.line, tenant_key,
                     "expected a map of max_stored_bytes and/or "
                     "max_upload_streams");
      }
      TenantQuotaSetting& quota = settings_->quota_tenants[name_node.value];
      absl::flat_hash_map<std::string, int> field_lines;
      for (size_t j = 0; j + 1 < fields.children.size(); j += 2) {
        const YamlNode& field_node = fields.children[j];
        const std::string key = absl::StrCat(tenant_key, ".", field_node.value);
        CKPT_RETURN_IF_ERROR(FirstTime(field_node.line, key, field_lines));
        std::optional<int64_t>* field =
            field_node.value == "max_stored_bytes" ? &quota.max_stored_bytes
            : field_node.value == "max_upload_streams"
                ? &quota.max_upload_streams
                : nullptr;
        const ServerSetting* twin = FindServerSetting(
            absl::StrCat("quotas.defaults.", field_node.value));
        if (field == nullptr || twin == nullptr) {
          return Error(field_node.line, key,
                       "unknown key (a tenant's quotas are max_stored_bytes "
                       "and max_upload_streams)");
        }
        ServerSettings parsed;
        if (absl::Status status =
                ApplyValue(*twin, fields.children[j + 1], &parsed);
            !status.ok()) {
          return Error(field_node.line, key, status.message());
        }
        *field = parsed.*std::get<int64_t ServerSettings::*>(twin->field);
      }
    }
    return absl::OkStatus();
  }

  // OK the first time `key` is seen in `lines`, else the duplicate-key
  // error.
  absl::Status FirstTime(int line, const std::string& key,
                         absl::flat_hash_map<std::string, int>& lines) const {
    auto [it, inserted] = lines.emplace(key, line);
    if (inserted) return absl::OkStatus();
    return Error(
        line, key,
        absl::StrCat("duplicate key (first given on line ", it->second, ")"));
  }

  absl::Status ApplyValue(const ServerSetting& setting, const YamlNode& value) {
    return ApplyValue(setting, value, settings_);
  }
  absl::Status ApplyValue(const ServerSetting& setting, const YamlNode& value,
                          ServerSettings* settings) {
    switch (value.kind) {
      case YamlNode::Kind::kNull:
        return absl::InvalidArgumentError(absl::StrCat(
            "no value (expected ", TypeName(setting.type),
            setting.type == SettingType::kString ? "; write \"\" for none" : "",
            ")"));
      case YamlNode::Kind::kSequence:
      case YamlNode::Kind::kMap:
        return absl::InvalidArgumentError(
            absl::StrCat("wrong type: a ",
                         value.kind == YamlNode::Kind::kMap ? "map" : "list",
                         " where ", TypeName(setting.type), " is expected"));
      case YamlNode::Kind::kScalar:
        break;
    }
    if (value.quoted && setting.type != SettingType::kString) {
      return absl::InvalidArgumentError(
          absl::StrCat("wrong type: a quoted string where ",
                       TypeName(setting.type), " is expected"));
    }
    return ParseServerSetting(setting, value.value, settings);
  }

  const std::string file_name_;
  ServerSettings* const settings_;
  absl::flat_hash_map<std::string, int> first_line_;
};

std::string Quoted(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      absl::StrAppend(&out, "\\", std::string(1, c));
    } else if (byte < 0x20 || byte == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", byte);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace

absl::Status ApplyConfigText(absl::string_view text,
                             absl::string_view file_name,
                             ServerSettings* settings) {
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ": larger than ", kMaxConfigBytes, " bytes"));
  }
  TreeBuilder builder;
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    while (!builder.error().has_value() && parser.HandleNextDocument(builder)) {
    }
  } catch (const YAML::Exception& e) {
    builder.Fail(e.mark, absl::StrCat("not valid YAML: ", e.msg));
  } catch (const std::exception& e) {
    builder.Fail(YAML::Mark(), absl::StrCat("not valid YAML: ", e.what()));
  }
  if (const auto& error = builder.error(); error.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ":", error->first, ": ", error->second));
  }
  if (!builder.has_root() || builder.root().kind == YamlNode::Kind::kNull) {
    return absl::OkStatus();  // an empty file: nothing changed
  }
  if (builder.root().kind != YamlNode::Kind::kMap) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_name, ":", builder.root().line,
                     ": the file must be a map of settings (key: value)"));
  }
  return SettingsApplier(file_name, settings).ApplyMap(builder.root(), "");
}

absl::Status ApplyConfigFile(const std::string& path,
                             ServerSettings* settings) {
  absl::StatusOr<std::string> text =
      ReadSmallRegularFile(path, kMaxConfigBytes);
  if (!text.ok()) {
    return absl::Status(
        text.status().code(),
        absl::StrCat("--config ", path, ": ", text.status().message()));
  }
  return ApplyConfigText(*text, path, settings);
}

namespace {

// The quotas.tenants section, at `indent` spaces, names quoted (a tenant
// may be called "null" or "1").
std::string TenantQuotasYaml(const ServerSettings& settings, size_t indent) {
  const std::string pad(indent, ' ');
  if (settings.quota_tenants.empty()) return pad + "tenants: {}\n";
  std::string out = pad + "tenants:\n";
  for (const auto& [tenant, quota] : settings.quota_tenants) {
    std::vector<std::string> fields;
    if (quota.max_stored_bytes.has_value()) {
      fields.push_back(absl::StrCat(
          "max_stored_bytes: ",
          FormatByteSize(static_cast<uint64_t>(*quota.max_stored_bytes))));
    }
    if (quota.max_upload_streams.has_value()) {
      fields.push_back(
          absl::StrCat("max_upload_streams: ", *quota.max_upload_streams));
    }
    absl::StrAppend(&out, pad, "  ", Quoted(tenant), ": {",
                    absl::StrJoin(fields, ", "), "}\n");
  }
  return out;
}

}  // namespace

std::string ConfigYaml(const ServerSettings& settings) {
  std::string out =
      "# ckpt-server's effective settings (ckpt-server --print-config);\n"
      "# a valid --config file.\n";
  std::vector<std::string> open;  // the sections of the previous key
  for (const ServerSetting& setting : ServerSettingTable()) {
    std::vector<std::string> path = absl::StrSplit(setting.key, '.');
    const std::string name = path.back();
    path.pop_back();
    if (!open.empty() && open[0] == "quotas" &&
        (path.empty() || path[0] != "quotas")) {
      out += TenantQuotasYaml(settings, 2);
    }
    size_t common = 0;
    while (common < open.size() && common < path.size() &&
           open[common] == path[common]) {
      ++common;
    }
    open.resize(common);
    for (size_t i = common; i < path.size(); ++i) {
      absl::StrAppend(&out, std::string(2 * i, ' '), path[i], ":\n");
      open.push_back(path[i]);
    }
    const std::string value = FormatServerSetting(setting, settings);
    absl::StrAppend(
        &out, std::string(2 * path.size(), ' '), name, ": ",
        setting.type == SettingType::kString ? Quoted(value) : value, "\n");
  }
  if (!open.empty() && open[0] == "quotas") {
    out += TenantQuotasYaml(settings, 2);
  }
  return out;
}

}  // namespace ckpt::server
