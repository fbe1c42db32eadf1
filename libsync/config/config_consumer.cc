#include "libsync/config/config.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "libsync/config/config_reader.h"
#include "yaml-cpp/yaml.h"

// The consumer's section of the config (consumer:): its listeners, keys,
// producers and the DocType mappings, cross-checked once all are read.

namespace eventstream {
namespace config_internal {

absl::Status Parser::ParseConsumer(const YAML::Node& node,
                                   const DocTypeRegistry& registry,
                                   ConsumerConfig* consumer) {
  MapReader m(errors_, "consumer");
  RETURN_IF_ERROR(
      m.Open(node, {"listen", "advertise", "metrics_listen", "tls", "api_keys",
                    "poll_interval", "max_message_mb", "sync_log_retention",
                    "producers", "mappings"}));
  RETURN_IF_ERROR(m.Address("listen", &consumer->listen));
  if (consumer->listen.empty()) consumer->listen = "0.0.0.0:50052";
  RETURN_IF_ERROR(m.Address("advertise", &consumer->advertise));
  RETURN_IF_ERROR(m.Address("metrics_listen", &consumer->metrics_listen));
  if (m.Has("tls")) {
    RETURN_IF_ERROR(ParseTlsServer(m.Get("tls"), m.PathOf("tls"),
                                   &consumer->tls.emplace()));
  }
  RETURN_IF_ERROR(ParseApiKeys(m, true, &consumer->api_keys));
  RETURN_IF_ERROR(m.Duration("poll_interval", &consumer->poll_interval));
  RETURN_IF_ERROR(Int(m, "max_message_mb", 4, 1024, &consumer->max_message_mb));
  // 0: kept for ever.
  RETURN_IF_ERROR(
      m.DurationOrZero("sync_log_retention", &consumer->sync_log_retention));
  RETURN_IF_ERROR(m.List(
      "producers", &consumer->producers,
      [this](const YAML::Node& n, const std::string& p,
             EventProducerConfig* e) { return ParseEventProducer(n, p, e); }));
  RETURN_IF_ERROR(
      m.List("mappings", &consumer->mappings,
             [this](const YAML::Node& n, const std::string& p,
                    DocTypeMapping* d) { return ParseMapping(n, p, d); }));
  RETURN_IF_ERROR(CheckMappings(registry, *consumer));
  // The consumer builds a MappingSet from these; whatever it would refuse
  // must fail here, before the service starts. The checks above report
  // the known cases at their key; this catches any rule added there later.
  absl::StatusOr<MappingSet> set = MappingSet::Create(consumer->mappings);
  if (!set.ok()) {
    return errors_.At("consumer.mappings", set.status().message());
  }
  return CheckProducers(registry, *consumer);
}

absl::Status Parser::ParseEventProducer(const YAML::Node& node,
                                        const std::string& path,
                                        EventProducerConfig* p) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(m.Open(node, {"name", "url", "api_key", "api_secret_env",
                                "api_secret_file", "tls", "delivery", "apply_workers",
                                "doctypes"}));
  RETURN_IF_ERROR(m.String("name", &p->name, true));
  RETURN_IF_ERROR(m.String("url", &p->url, true));
  // Frappe users will paste their producer's site URL; say what we need.
  if (absl::StartsWith(p->url, "http://") ||
      absl::StartsWith(p->url, "https://") ||
      p->url.find_first_of(" \t") != std::string::npos) {
    return errors_.At(m.PathOf("url"),
                      "expected the producer's gRPC address host:port "
                      "(not an http URL)");
  }
  RETURN_IF_ERROR(m.String("api_key", &p->api_key, true));
  RETURN_IF_ERROR(
      ParseSecretRef(m, "api_secret_env", "api_secret_file", &p->api_secret));
  if (m.Has("tls")) {
    RETURN_IF_ERROR(
        ParseTlsClient(m.Get("tls"), m.PathOf("tls"), &p->tls.emplace()));
  }
  using Delivery = EventProducerConfig::Delivery;
  RETURN_IF_ERROR(m.Enum<Delivery>(
      "delivery", {{"stream", Delivery::kStream}, {"pull", Delivery::kPull}}, &p->delivery));
  RETURN_IF_ERROR(Int(m, "apply_workers", 1, 8, &p->apply_workers));
  return m.List("doctypes", &p->doctypes,
                [this](const YAML::Node& n, const std::string& dp,
                       ProducerDocTypeConfig* d) {
                  return ParseProducerDocType(n, dp, d);
                });
}

absl::Status Parser::ParseProducerDocType(const YAML::Node& node,
                                          const std::string& path,
                                          ProducerDocTypeConfig* d) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(
      m.Open(node, {"doctype", "use_same_name", "condition", "mapping",
                    "unsubscribe", "on_move_out", "initial_sync"}));
  RETURN_IF_ERROR(m.String("doctype", &d->doctype, true));
  RETURN_IF_ERROR(m.Bool("use_same_name", &d->use_same_name));
  RETURN_IF_ERROR(m.String("condition", &d->condition));
  RETURN_IF_ERROR(CheckCondition(m.PathOf("condition"), d->condition));
  RETURN_IF_ERROR(m.String("mapping", &d->mapping));
  RETURN_IF_ERROR(m.Bool("unsubscribe", &d->unsubscribe));
  RETURN_IF_ERROR(m.Bool("initial_sync", &d->initial_sync));
  using MoveOut = ProducerDocTypeConfig::MoveOut;
  return m.Enum<MoveOut>(
      "on_move_out", {{"delete", MoveOut::kDelete}, {"keep", MoveOut::kKeep}},
      &d->on_move_out);
}

absl::Status Parser::CheckProducers(const DocTypeRegistry& registry,
                                    const ConsumerConfig& consumer) {
  std::map<std::string, size_t> names;
  for (size_t i = 0; i < consumer.producers.size(); ++i) {
    const EventProducerConfig& p = consumer.producers[i];
    std::string path = IndexPath("consumer.producers", i);
    auto [it, inserted] = names.emplace(p.name, i);
    if (!inserted) {
      return errors_.At(ChildPath(path, "name"),
                        absl::StrCat("duplicate producer ", Quote(p.name),
                                     " (also producers[", it->second, "])"));
    }
    // Rows are keyed by the producer's DocType (as Frappe's Event
    // Producer Document Type is): two mappings may feed one local DocType
    // from two remote ones, but one remote DocType is subscribed once.
    std::map<std::string, size_t> remote;
    for (size_t j = 0; j < p.doctypes.size(); ++j) {
      const ProducerDocTypeConfig& d = p.doctypes[j];
      std::string dpath = IndexPath(ChildPath(path, "doctypes"), j);
      std::string remote_doctype = d.doctype;
      if (d.mapping.empty()) {
        RETURN_IF_ERROR(CheckSubscribable(ChildPath(dpath, "doctype"), registry,
                                          d.doctype));
      } else {
        ASSIGN_OR_RETURN(
            const DocTypeMapping* mapping,
            KnownMapping(consumer, d.mapping, ChildPath(dpath, "mapping")));
        if (mapping->local_doctype != d.doctype) {
          return errors_.At(
              ChildPath(dpath, "doctype"),
              absl::StrCat("expected ", Quote(mapping->local_doctype),
                           ", the local_doctype of mapping ",
                           Quote(d.mapping)));
        }
        RETURN_IF_ERROR(CheckSubscribable(ChildPath(dpath, "doctype"), registry,
                                          d.doctype));
        remote_doctype = mapping->remote_doctype;
      }
      auto [rit, rinserted] = remote.emplace(remote_doctype, j);
      if (!rinserted) {
        return errors_.At(
            ChildPath(dpath, "doctype"),
            absl::StrCat("the producer's DocType ", Quote(remote_doctype),
                         " is already subscribed by "
                         "doctypes[",
                         rit->second, "]"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseMapping(const YAML::Node& node,
                                  const std::string& path,
                                  DocTypeMapping* mapping) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(m.Open(
      node, {"name", "local_doctype", "remote_doctype", "field_mapping"}));
  RETURN_IF_ERROR(m.String("name", &mapping->name, true));
  RETURN_IF_ERROR(m.String("local_doctype", &mapping->local_doctype, true));
  RETURN_IF_ERROR(m.String("remote_doctype", &mapping->remote_doctype, true));
  RETURN_IF_ERROR(m.Required("field_mapping"));
  RETURN_IF_ERROR(
      m.List("field_mapping", &mapping->field_mapping,
             [this](const YAML::Node& n, const std::string& p,
                    FieldMapping* f) { return ParseFieldMapping(n, p, f); }));
  if (mapping->field_mapping.empty()) {
    // Fields without a rule are dropped, so an empty mapping would
    // replicate empty documents.
    return errors_.At(m.PathOf("field_mapping"),
                      "required (at least one field)");
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseFieldMapping(const YAML::Node& node,
                                       const std::string& path,
                                       FieldMapping* f) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(
      m.Open(node, {"remote_fieldname", "local_fieldname", "mapping_type",
                    "mapping", "default_value", "remote_value_filters"}));
  RETURN_IF_ERROR(m.String("remote_fieldname", &f->remote_fieldname, true));
  RETURN_IF_ERROR(m.String("local_fieldname", &f->local_fieldname, true));
  RETURN_IF_ERROR(m.Enum<std::string>(
      "mapping_type",
      {{"Child Table", "Child Table"}, {"Document", "Document"}},
      &f->mapping_type));
  RETURN_IF_ERROR(m.String("mapping", &f->mapping));
  RETURN_IF_ERROR(m.String("default_value", &f->default_value));
  if (f->mapping_type.empty() && !f->mapping.empty()) {
    return errors_.At(m.PathOf("mapping"),
                      "only used with mapping_type Child Table or "
                      "Document");
  }
  if (!f->mapping_type.empty() && f->mapping.empty()) {
    return errors_.At(
        m.PathOf("mapping"),
        absl::StrCat("required with mapping_type ", f->mapping_type));
  }
  if (f->mapping_type == "Child Table" && !f->default_value.empty()) {
    return errors_.At(m.PathOf("default_value"),
                      "not used with mapping_type Child Table (rows come "
                      "from the remote table or not at all)");
  }
  YAML::Node filters = m.Get("remote_value_filters");
  if (!Present(filters)) {
    if (f->mapping_type == "Document") {
      return errors_.At(m.PathOf("remote_value_filters"),
                        absl::StrCat("required with mapping_type Document: "
                                     "{field: value} selecting the remote "
                                     "document, e.g. {name: doc.",
                                     f->remote_fieldname, "}"));
    }
    return absl::OkStatus();
  }
  if (f->mapping_type != "Document") {
    return errors_.At(m.PathOf("remote_value_filters"),
                      "only used with mapping_type Document");
  }
  if (!filters.IsMap() || filters.size() == 0) {
    return errors_.At(m.PathOf("remote_value_filters"),
                      "expected a non-empty mapping of remote field to "
                      "value");
  }
  // The same rules MappingSet::Create applies (RemoteValueFilter::Parse:
  // "eval:" expressions must parse), reported at the key.
  for (const auto& entry : filters) {
    const std::string key = entry.first.Scalar();
    std::string path = ChildPath(m.PathOf("remote_value_filters"), key);
    if (Present(entry.second) && !entry.second.IsScalar()) {
      return errors_.At(path,
                        "expected a value, a field name, doc.<field> or "
                        "eval:<expression>");
    }
    absl::StatusOr<RemoteValueFilter> parsed =
        RemoteValueFilter::Parse(key, YamlToValue(entry.second));
    if (!parsed.ok()) {
      absl::string_view message = parsed.status().message();
      absl::ConsumePrefix(&message,
                          absl::StrCat("remote_value_filters.", key, ": "));
      return errors_.At(path, message);
    }
  }
  f->remote_value_filters = YamlToValue(filters);
  return absl::OkStatus();
}

// Cross-checks mappings against the registry and each other, once all of
// them are read (a field mapping may name a mapping declared later).
absl::Status Parser::CheckMappings(const DocTypeRegistry& registry,
                                   const ConsumerConfig& consumer) {
  RETURN_IF_ERROR(CheckUnique(errors_, consumer.mappings, &DocTypeMapping::name,
                              "consumer.mappings", "name", "mapping"));
  for (size_t i = 0; i < consumer.mappings.size(); ++i) {
    const DocTypeMapping& mapping = consumer.mappings[i];
    std::string path = IndexPath("consumer.mappings", i);
    const DocTypeDef* local = registry.Find(mapping.local_doctype);
    if (local == nullptr) {
      return errors_.At(
          ChildPath(path, "local_doctype"),
          absl::StrCat("unknown DocType ", Quote(mapping.local_doctype),
                       " (add it under doctypes:)"));
    }
    std::map<std::string, size_t> written;
    for (size_t j = 0; j < mapping.field_mapping.size(); ++j) {
      const FieldMapping& f = mapping.field_mapping[j];
      std::string fpath = IndexPath(ChildPath(path, "field_mapping"), j);
      auto [wit, winserted] = written.emplace(f.local_fieldname, j);
      if (!winserted) {
        return errors_.At(ChildPath(fpath, "local_fieldname"),
                          absl::StrCat(Quote(f.local_fieldname),
                                       " is already written by "
                                       "field_mapping[",
                                       wit->second, "]"));
      }
      RETURN_IF_ERROR(CheckFieldMapping(consumer, *local, f, fpath));
    }
  }
  return absl::OkStatus();
}

// One field mapping of a mapping whose local DocType is `local`: the local
// field exists, and a Child Table / Document rule names a mapping that
// produces what the field holds.
absl::Status Parser::CheckFieldMapping(const ConsumerConfig& consumer,
                                       const DocTypeDef& local,
                                       const FieldMapping& f,
                                       const std::string& fpath) {
  const FieldDef* field = local.FindField(f.local_fieldname);
  if (field == nullptr &&
      !IsStandardColumn(f.local_fieldname, local.istable)) {
    return errors_.At(
        ChildPath(fpath, "local_fieldname"),
        absl::StrCat(Quote(f.local_fieldname),
                     " is not a field of DocType ", Quote(local.name)));
  }
  if (f.mapping_type.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(
      const DocTypeMapping* inner,
      KnownMapping(consumer, f.mapping, ChildPath(fpath, "mapping")));
  // The inner mapping must produce what the local field holds: the
  // Table's child DocType, or the Link's target DocType.
  if (f.mapping_type == "Child Table") {
    if (field == nullptr || !field->is_table()) {
      return errors_.At(ChildPath(fpath, "local_fieldname"),
                        absl::StrCat(Quote(f.local_fieldname),
                                     " is not a Table field (required "
                                     "by mapping_type Child Table)"));
    }
    if (inner->local_doctype != field->options) {
      return errors_.At(
          ChildPath(fpath, "mapping"),
          absl::StrCat("mapping ", Quote(f.mapping), " produces ",
                       Quote(inner->local_doctype), " but field ",
                       Quote(f.local_fieldname), " holds ",
                       Quote(field->options)));
    }
  } else {  // Document
    if (field == nullptr ||
        (!field->is_link() && !field->is_dynamic_link())) {
      return errors_.At(ChildPath(fpath, "local_fieldname"),
                        absl::StrCat(Quote(f.local_fieldname),
                                     " is not a Link field (required "
                                     "by mapping_type Document)"));
    }
    if (field->is_link() && inner->local_doctype != field->options) {
      return errors_.At(
          ChildPath(fpath, "mapping"),
          absl::StrCat("mapping ", Quote(f.mapping), " produces ",
                       Quote(inner->local_doctype), " but field ",
                       Quote(f.local_fieldname), " links to ",
                       Quote(field->options)));
    }
  }
  return absl::OkStatus();
}

// consumer.mappings' entry named `name`, or the error at `path`.
absl::StatusOr<const DocTypeMapping*> Parser::KnownMapping(
    const ConsumerConfig& consumer, const std::string& name,
    const std::string& path) {
  const DocTypeMapping* mapping = consumer.FindMapping(name);
  if (mapping == nullptr) {
    return errors_.At(path, absl::StrCat("unknown mapping ", Quote(name),
                                         " (expected the name of one of "
                                         "consumer.mappings)"));
  }
  return mapping;
}

}  // namespace config_internal

const ApiKeyConfig* ConsumerConfig::FindApiKey(std::string_view key) const {
  return config_internal::FindBy(api_keys, &ApiKeyConfig::key, key);
}

const EventProducerConfig* ConsumerConfig::FindProducer(
    std::string_view name) const {
  return config_internal::FindBy(producers, &EventProducerConfig::name, name);
}

const DocTypeMapping* ConsumerConfig::FindMapping(std::string_view name) const {
  return config_internal::FindBy(mappings, &DocTypeMapping::name, name);
}

}  // namespace eventstream
