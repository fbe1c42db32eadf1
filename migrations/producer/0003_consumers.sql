-- Event Consumers: who registered, where to notify them, how far they have
-- read, and their per-DocType subscriptions (services/producer/
-- consumer_store.h is the only writer).

-- One row per registered consumer site.
CREATE TABLE consumer (
  site             text PRIMARY KEY,
  -- The api key id the site registered with (for a consumer key: the site).
  api_key          text NOT NULL,
  -- host:port of the consumer's Consumer.Notify; '' = it polls only.
  notify_address   text NOT NULL DEFAULT '',
  -- Sent back as the Notify token. A credential: never logged.
  notify_token     text NOT NULL DEFAULT '',
  registered_at    timestamptz NOT NULL DEFAULT now(),
  -- The after_seq of its latest PullUpdates: everything up to here arrived.
  acknowledged_seq bigint NOT NULL DEFAULT 0,
  last_pull_at     timestamptz
);

-- One row per DocType a consumer ever asked for. A DocType dropped from its
-- list stays with unsubscribed = true, so asking again keeps the approval.
CREATE TABLE consumer_doctype (
  site               text NOT NULL REFERENCES consumer (site) ON DELETE CASCADE,
  doctype            text NOT NULL,
  status             text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'approved', 'rejected')),
  -- The consumer's condition: '' (every document), a Python-style
  -- expression, or cmd:schema.function.
  condition          text NOT NULL DEFAULT '',
  -- The producer's own condition from its config (producer.consumers[]
  -- .doctypes[].condition), same forms; a document must pass both.
  producer_condition text NOT NULL DEFAULT '',
  unsubscribed       boolean NOT NULL DEFAULT false,
  -- status (whatever it is) and producer_condition come from the config's
  -- producer.consumers pre-approvals; SetSubscriptionStatus may not change it.
  approved_by_config boolean NOT NULL DEFAULT false,
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (site, doctype)
);

-- Capture and notify ask "who is approved for DocType X".
CREATE INDEX consumer_doctype_by_doctype ON consumer_doctype (doctype)
  WHERE status = 'approved' AND NOT unsubscribed;
