-- Outgoing webhooks (services/producer/webhook_store.h is the only writer):
-- their definitions with a per-webhook delivery cursor, and the Webhook
-- Request Log, which is also the delivery queue.

-- One row per webhook. Config webhooks (producer.webhooks) are written here
-- on every start (from_config = true; the RPCs may not change them); runtime
-- ones come from Webhooks.UpsertWebhook.
CREATE TABLE webhook (
  name        text PRIMARY KEY,
  doctype     text NOT NULL,
  -- The whole definition (libsync WebhookConfig as JSON; secrets only as
  -- the names of their variables/files).
  definition  jsonb NOT NULL,
  from_config boolean NOT NULL DEFAULT false,
  -- Delivery cursor: every update_log entry with seq <= last_seq has been
  -- looked at for this webhook (its requests, if any, are in
  -- webhook_request). A new webhook starts at the log position of its
  -- creation: it fires for changes from then on.
  last_seq    bigint NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The Webhook Request Log: one row per (webhook, update_log entry) that
-- fired. Queued rows are the delivery queue; Success, Failed (not
-- retryable: a 4xx other than 429, or the request could not be built) and
-- Exhausted (max_attempts retryable failures) are final.
CREATE TABLE webhook_request (
  id              bigserial PRIMARY KEY,
  -- Sent as the `webhook-id` header: the same on every attempt and retry.
  request_id      text NOT NULL UNIQUE
                  DEFAULT ('msg_' || replace(gen_random_uuid()::text, '-', '')),
  webhook         text NOT NULL,
  seq             bigint NOT NULL,       -- the update_log entry
  doctype         text NOT NULL,
  docname         text NOT NULL,
  doc_event       text NOT NULL,
  url             text NOT NULL,
  method          text NOT NULL,
  -- [[key, value], ...] as sent, secret values replaced by "***" (they are
  -- resolved from the webhook's definition when sending).
  headers         jsonb NOT NULL DEFAULT '[]',
  body            text NOT NULL DEFAULT '',
  status          text NOT NULL DEFAULT 'Queued'
                  CHECK (status IN ('Queued', 'Success', 'Failed', 'Exhausted')),
  attempts        int NOT NULL DEFAULT 0,
  -- The persisted backoff schedule: a Queued row is not sent before this.
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  response_code   int,                   -- of the last attempt; NULL = none
  response_body   text,                  -- truncated
  error           text,                  -- of the last attempt; NULL = none
  duration_ms     int,                   -- of the last attempt
  created_at      timestamptz NOT NULL DEFAULT now(),
  first_attempt_at timestamptz,
  last_attempt_at timestamptz,
  finished_at     timestamptz,
  UNIQUE (webhook, seq)
);
-- Workers: the due Queued rows, oldest first.
CREATE INDEX webhook_request_due ON webhook_request (next_attempt_at, id)
  WHERE status = 'Queued';
-- Per-document order: an earlier Queued row of the same webhook and
-- document holds back the later ones.
CREATE INDEX webhook_request_doc ON webhook_request (webhook, doctype, docname, id)
  WHERE status = 'Queued';
-- ListWebhookRequests and retention.
CREATE INDEX webhook_request_created ON webhook_request (created_at);
