#!/usr/bin/env python3
"""Generates k8s/charts/eventstream/values.schema.json (the chart tests check
that the committed file is what this prints).

The config part mirrors the schema documented at the top of libsync/config/config.h:
same keys, required keys, enums and patterns (DocType names, identifiers,
host:port, durations). Change both together. Usage:
  python3 tests/chart/gen_values_schema.py > k8s/charts/eventstream/values.schema.json
"""
import json
FIELDTYPES = ["Data","Small Text","Text","Long Text","Text Editor","Markdown Editor","HTML Editor","Code","Int","Float","Currency","Percent","Check","Date","Datetime","Time","Duration","Select","Link","Dynamic Link","Table","JSON","Password","Read Only","Attach","Attach Image","Color","Phone","Rating","Signature","Barcode","Geolocation","Autocomplete","Icon"]
def obj(props, required=(), desc=None, extra=None):
    o = {"type": "object", "additionalProperties": False, "properties": props}
    if required: o["required"] = list(required)
    if desc: o["description"] = desc
    if extra: o.update(extra)
    return o
def ref(n): return {"$ref": "#/definitions/" + n}
def s(desc=None, **kw):
    o = {"type": "string"}
    if desc: o["description"] = desc
    o.update(kw); return o
D = {}
D["plainName"] = s("letters, digits, '.', '_', '-'", pattern=r"^[A-Za-z0-9._-]+$")
D["envName"] = s("an environment variable name like ES_SECRET_BRANCH1", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
D["requiredText"] = s(minLength=1)
D["docTypeName"] = s("a DocType name: a letter, then letters, digits, spaces, '_', '-'", pattern=r"^[A-Za-z]([A-Za-z0-9 _-]*[A-Za-z0-9_-])?$")
D["fieldname"] = s("an identifier (letters, digits, '_', not starting with a digit)", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
D["address"] = s("host:port (e.g. 0.0.0.0:50051) or unix:/path; \"\" = default/off", pattern=r"^(|unix:.+|\S+:[0-9]{1,5})$")
D["duration"] = s("a duration: 500ms, 30s, 2m, 1h", pattern=r"^(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|ms|s|m|h))+$")
D["durationOrZero"] = {"description": "a duration (500ms, 30s, 2m, 1h) or 0 for none",
                      "anyOf": [s(pattern=r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|ms|s|m|h))+)$"),
                                {"type": "integer", "enum": [0]}]}
D["flag"] = {"description": "true/false (or 1/0)", "enum": [True, False, 0, 1, "true", "false", "True", "False", "0", "1"]}
D["scalar"] = {"type": ["string", "number", "boolean"]}
D["condition"] = s("a Python-style expression over doc, or cmd:schema.function; \"\" = every document")
D["apiKey"] = obj({
    "key": ref("plainName"),
    "secret_env": ref("envName"),
    "secret_file": s("path of a file holding the secret", minLength=1),
    "role": {"enum": ["consumer", "admin"]},
}, ["key", "role"], extra={"oneOf": [
    {"required": ["secret_env"], "not": {"required": ["secret_file"]}},
    {"required": ["secret_file"], "not": {"required": ["secret_env"]}}]})
D["adminApiKey"] = {"allOf": [ref("apiKey"), {"properties": {"role": {"const": "admin"}}}]}
D["field"] = obj({
    "fieldname": ref("fieldname"),
    "fieldtype": {"enum": FIELDTYPES},
    "options": s(),
    "reqd": ref("flag"),
    "default": ref("scalar"),
}, ["fieldname", "fieldtype"])
D["doctype"] = obj({
    "name": ref("docTypeName"),
    "table": s("the table; default \"tab\" + name"),
    "autoname": s("hash | uuid | field:<fieldname> | series:PREFIX-.#####", pattern=r"^(|hash|uuid|field:[A-Za-z_][A-Za-z0-9_]*|series:.+#)$"),
    "istable": ref("flag"),
    "is_submittable": ref("flag"),
    "fields": {"type": "array", "items": ref("field")},
}, ["name"])
D["consumerSite"] = obj({
    "site": ref("plainName"),
    "doctypes": {"type": "array", "items": obj({
        "doctype": ref("docTypeName"),
        "status": {"enum": ["approved", "pending", "rejected", ""]},
        "condition": ref("condition"),
    }, ["doctype"], "a pre-approval of one DocType")},
}, ["site"])
D["webhookHeader"] = obj({
    "key": s("an HTTP header name", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"),
    "value": ref("scalar"),
    "value_env": ref("envName"),
    "value_file": s(minLength=1),
}, ["key"], extra={"oneOf": [
    {"required": ["value"], "not": {"anyOf": [{"required": ["value_env"]}, {"required": ["value_file"]}]}},
    {"required": ["value_env"], "not": {"anyOf": [{"required": ["value"]}, {"required": ["value_file"]}]}},
    {"required": ["value_file"], "not": {"anyOf": [{"required": ["value"]}, {"required": ["value_env"]}]}}]})
D["webhook"] = obj({
    "name": s("unique; letters, digits, '.', '_', '-', ' '", pattern=r"^[A-Za-z0-9._ -]+$"),
    "doctype": ref("docTypeName"),
    "doc_event": {"enum": ["after_insert", "on_update", "on_submit", "on_cancel", "on_trash",
                           "on_update_after_submit", "on_change"]},
    "enabled": ref("flag"),
    "condition": ref("condition"),
    "request_url": s("http(s) URL; may use {{ doc.field }}", pattern=r"^https?://"),
    "request_method": {"enum": ["POST", "PUT", "PATCH", "DELETE", ""]},
    "headers": {"type": "array", "items": ref("webhookHeader")},
    "request_structure": {"enum": ["Form", "JSON", ""]},
    "webhook_data": {"type": "array", "items": obj({"fieldname": ref("requiredText"), "key": s()}, ["fieldname"])},
    "webhook_json": s(),
    "timeout": ref("duration"),
    "enable_security": ref("flag"),
    "secret_env": ref("envName"),
    "secret_file": s(minLength=1),
}, ["name", "doctype", "doc_event", "request_url"], "an outgoing webhook (Frappe's Webhook)",
   extra={"not": {"required": ["secret_env", "secret_file"]}})
D["webhookDelivery"] = obj({
    "workers": {"type": "integer", "minimum": 1, "maximum": 64},
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
    "initial_backoff": ref("duration"),
    "max_backoff": ref("duration"),
    "poll_interval": ref("duration"),
    "retention": ref("duration"),
    "nice": {"type": "integer", "minimum": 0, "maximum": 19,
             "description": "CPU priority of the delivery threads, as nice(1)"},
    "busy_cpu_percent": {"type": "integer", "minimum": 0, "maximum": 6400,
                         "description": "while the site writes, delivery uses at most this % of one core; 0 = no limit"},
    "runtime_secret_env": {"type": "array", "items": s(
        "an environment variable name, or a prefix ending in * (not * alone)",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*\*?$"),
        "description": "the environment variables runtime webhooks (Webhooks RPCs) may read as secrets; none by default"},
})
D["tlsServer"] = obj({
    "cert_file": s("PEM certificate chain, the server's own first", minLength=1),
    "key_file": s("its PEM private key", minLength=1),
    "client_ca_file": s("PEM CA bundle; set = clients must present a certificate one of these signed (mutual TLS)"),
    "refresh_interval": ref("duration"),
}, ["cert_file", "key_file"], "serve TLS (libsync/config/config.h); absent = plaintext")
D["tlsClient"] = obj({
    "ca_file": s("PEM CA bundle that verifies the server; \"\" = the system's roots"),
    "server_name": s("the name the server's certificate must carry; \"\" = the host dialled",
                     pattern=r"^[^\s/]*$"),
    "cert_file": s("client certificate (with key_file) for mutual TLS"),
    "key_file": s("its PEM private key"),
    "refresh_interval": ref("duration"),
}, desc="dial with TLS (libsync/config/config.h); absent = plaintext", extra={"allOf": [
    {"if": {"required": ["cert_file"]}, "then": {"required": ["key_file"]}},
    {"if": {"required": ["key_file"]}, "then": {"required": ["cert_file"]}}]})
D["producerDocType"] = obj({
    "doctype": ref("docTypeName"),
    "use_same_name": ref("flag"),
    "condition": ref("condition"),
    "mapping": s("the name of one of consumer.mappings; \"\" = none"),
    "unsubscribe": ref("flag"),
    "on_move_out": {"enum": ["delete", "keep", ""],
                    "description": "what a move-out (REVOKE) does to the local copy: delete (default) or keep it, no longer followed"},
    "initial_sync": ref("flag"),
}, ["doctype"], "one DocType followed from this producer (the LOCAL DocType)")
D["eventProducer"] = obj({
    "name": ref("requiredText"),
    "url": s("the producer's gRPC address host:port (not an http URL)", pattern=r"^[^\s]+$", minLength=1, **{"not": {"pattern": "^https?://"}}),
    "api_key": ref("requiredText"),
    "api_secret_env": ref("envName"),
    "api_secret_file": s(minLength=1),
    "tls": ref("tlsClient"),
    "delivery": {"enum": ["", "stream", "pull"],
                 "description": "stream (default): the producer pushes entries over one open call; pull: pull after Notify or every poll_interval"},
    "apply_workers": {"type": "integer", "minimum": 1, "maximum": 8,
                      "description": "lanes a batch is applied in concurrently, each its own connection and transaction (a document's entries share one); 1 (default) = one transaction per batch"},
    "doctypes": {"type": "array", "items": ref("producerDocType")},
}, ["name", "url", "api_key"], extra={"oneOf": [
    {"required": ["api_secret_env"], "not": {"required": ["api_secret_file"]}},
    {"required": ["api_secret_file"], "not": {"required": ["api_secret_env"]}}]})
D["fieldMapping"] = obj({
    "remote_fieldname": ref("requiredText"),
    "local_fieldname": ref("requiredText"),
    "mapping_type": {"enum": ["", "Child Table", "Document"]},
    "mapping": s(),
    "default_value": ref("scalar"),
    "remote_value_filters": {"type": "object", "minProperties": 1,
                             "additionalProperties": {"type": ["string", "number", "boolean", "null"]}},
}, ["remote_fieldname", "local_fieldname"], extra={"allOf": [
    {"if": {"required": ["mapping_type"], "properties": {"mapping_type": {"const": "Child Table"}}},
     "then": {"required": ["mapping"], "properties": {"mapping": {"minLength": 1}}}},
    {"if": {"required": ["mapping_type"], "properties": {"mapping_type": {"const": "Document"}}},
     "then": {"required": ["mapping", "remote_value_filters"], "properties": {"mapping": {"minLength": 1}}}},
]})
D["mapping"] = obj({
    "name": ref("requiredText"),
    "local_doctype": ref("docTypeName"),
    "remote_doctype": ref("docTypeName"),
    "field_mapping": {"type": "array", "minItems": 1, "items": ref("fieldMapping")},
}, ["name", "local_doctype", "remote_doctype", "field_mapping"], "a Document Type Mapping")
D["secretKeyRef"] = obj({"name": ref("requiredText"), "key": ref("requiredText")}, ["name", "key"])
D["probe"] = {"type": "object", "properties": {k: {"type": "integer", "minimum": 0} for k in
              ["initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold", "successThreshold"]}}
D["deployment"] = obj({
    "replicas": {"type": "integer", "minimum": 0},
    "resources": {"type": "object"},
    "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
    "livenessProbe": ref("probe"),
    "readinessProbe": ref("probe"),
    "service": obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                    "annotations": {"type": "object"}}),
    "tlsSecret": s("a Secret of certificates (tls.crt, tls.key, ca.crt, as cert-manager writes them) mounted at /etc/eventstream-tls; \"\" = none"),
    "podDisruptionBudget": obj({"enabled": {"type": "boolean"},
                                "maxUnavailable": {"type": ["integer", "string"]},
                                "minAvailable": {"type": ["integer", "string"]}}),
    "podAnnotations": {"type": "object"},
    "podLabels": {"type": "object"},
    "extraEnv": {"type": "array"},
    "nodeSelector": {"type": "object"},
    "tolerations": {"type": "array"},
    "affinity": {"type": "object"},
})
peers = {"type": "array", "items": {"type": "object"}}
schema = {
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "eventstream chart values",
  "description": "site, database, log, doctypes, producer and consumer are the service config of libsync/config/config.h (its header comment is the reference; this schema mirrors it). The other keys are deployment-only.",
  "type": "object",
  "additionalProperties": False,
  "required": ["site", "producer", "consumer"],
  "properties": {
    "site": obj({"name": ref("plainName")}, ["name"]),
    "database": obj({"url": s("libpq URL; \"\" = ES_DATABASE_URL from a Secret")}),
    "log": obj({"level": {"enum": ["debug", "info", "warn", "error", ""]},
                "format": {"enum": ["text", "json", ""]}}),
    "doctypes": {"type": "array", "items": ref("doctype")},
    "producer": obj({
        "enabled": {"type": "boolean", "description": "chart only: run the producer"},
        "listen": ref("address"),
        "metrics_listen": ref("address"),
        "tls": ref("tlsServer"),
        "notify_tls": ref("tlsClient"),
        "api_keys": {"type": "array", "items": ref("apiKey")},
        "consumers": {"type": "array", "items": ref("consumerSite")},
        "condition_functions": {"type": "array", "description": "schema.function names a consumer's own cmd: condition may call (read-only)",
                                "items": s(pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")},
        "webhooks": {"type": "array", "items": ref("webhook")},
        "webhook_delivery": ref("webhookDelivery"),
        "retention": obj({
            "min_age": ref("durationOrZero"),
            "max_age": ref("durationOrZero"),
            "max_entries": {"type": "integer", "minimum": 0, "maximum": 2000000000,
                            "description": "valve: keep at most this many seqs; 0 = none"},
            "batch": {"type": "integer", "minimum": 1, "maximum": 100000,
                      "description": "update log entries deleted per transaction"},
            "interval": ref("duration"),
        }, desc="update log retention (docs/design.md Retention)"),
        "database_pool": obj({
            "max_connections": {"type": "integer", "minimum": 1, "maximum": 1000,
                                "description": "database sessions for RPCs, per replica"},
            "acquire_timeout": ref("duration"),
        }),
        "max_concurrent_calls_per_key": {"type": "integer", "minimum": 1, "maximum": 1000,
                                         "description": "RPCs of one api key at once; more are RESOURCE_EXHAUSTED"},
        "capture": {"enum": ["", "trigger", "wal"],
                    "description": "trigger (default: works on every PostgreSQL) or wal (logical decoding: wal_level=logical, the REPLICATION attribute)"},
        "wal_slot": s("capture: wal: the logical replication slot (default eventstream)", pattern=r"^[a-z0-9_]{0,63}$"),
        "wal_publication": s("capture: wal: the publication (default eventstream)", pattern=r"^[a-z0-9_]{0,63}$"),
    }, ["enabled"]),
    "consumer": obj({
        "enabled": {"type": "boolean", "description": "chart only: run the consumer"},
        "listen": ref("address"),
        "advertise": ref("address"),
        "metrics_listen": ref("address"),
        "tls": ref("tlsServer"),
        "api_keys": {"type": "array", "items": ref("adminApiKey")},
        "poll_interval": ref("duration"),
        "max_message_mb": {"type": "integer", "minimum": 4, "maximum": 1024,
                           "description": "the largest answer accepted from a producer, in MiB (bounds the largest document)"},
        "sync_log_retention": {"anyOf": [ref("duration"), {"enum": ["0", "0s"]}],
                               "description": "Synced sync log rows older than this are deleted (default 720h = 30 days; 0 = keep for ever); Failed and Parked rows stay until resolved"},
        "producers": {"type": "array", "items": ref("eventProducer")},
        "mappings": {"type": "array", "items": ref("mapping")},
    }, ["enabled"]),
    "image": obj({"repository": ref("requiredText"), "tag": s(), "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}, ["repository"]),
    "imagePullSecrets": {"type": "array"},
    "nameOverride": s(),
    "fullnameOverride": s(),
    "existingSecret": s("a Secret whose keys are the env var names (ES_DATABASE_URL, secret_env, api_secret_env)"),
    "secrets": {"type": "object", "propertyNames": ref("envName"), "additionalProperties": ref("secretKeyRef")},
    "secretMounts": {"type": "array", "items": obj({"name": ref("requiredText"), "mountPath": ref("requiredText")}, ["name", "mountPath"])},
    "serviceAccount": obj({"create": {"type": "boolean"}, "name": s(), "annotations": {"type": "object"},
                           "automountServiceAccountToken": {"type": "boolean"}}),
    "podSecurityContext": {"type": "object"},
    "securityContext": {"type": "object"},
    "producerDeployment": ref("deployment"),
    "consumerDeployment": ref("deployment"),
    "networkPolicy": obj({"enabled": {"type": "boolean"}, "producerFrom": peers, "consumerFrom": peers, "metricsFrom": peers}),
    "global": {"type": "object"},
  },
  "definitions": D,
}

if __name__ == "__main__":
    print(json.dumps(schema, indent=2))
