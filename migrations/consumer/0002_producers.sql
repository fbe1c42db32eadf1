-- Event Producers this consumer follows, their per-DocType subscriptions and
-- the watermark per producer (Event Producer Last Update).
-- services/consumer/producer_store.h writes event_producer and
-- producer_doctype; last_update is also advanced by the applier
-- (services/consumer/applier.h), in the transaction that applies a batch.

-- One row per configured producer, created at start from consumer.producers
-- (`name` is the producer's site name: its Notify calls authenticate with it).
CREATE TABLE event_producer (
  name           text PRIMARY KEY,
  -- host:port of its Producer service, as last configured.
  url            text NOT NULL,
  -- The api key this consumer authenticates with (the secret is never stored).
  api_key        text NOT NULL,
  -- When RegisterConsumer succeeded; NULL = not registered yet.
  registered_at  timestamptz,
  -- Handed to the producer at registration; it sends it back on Notify.
  -- A credential: never logged.
  notify_token   text NOT NULL,
  -- The notify_address last sent to the producer ('' = poll only); a change
  -- of consumer.advertise is sent with UpdateSubscription.
  notify_address text NOT NULL DEFAULT ''
);

-- One row per DocType subscribed at that producer, as last sent to it.
CREATE TABLE producer_doctype (
  producer      text NOT NULL REFERENCES event_producer (name) ON DELETE CASCADE,
  -- The producer's DocType (a mapping's remote_doctype when mapped).
  doctype       text NOT NULL,
  -- The local DocType its documents become.
  local_doctype text NOT NULL,
  use_same_name boolean NOT NULL DEFAULT false,
  condition     text NOT NULL DEFAULT '',
  mapping       text NOT NULL DEFAULT '',
  unsubscribe   boolean NOT NULL DEFAULT false,
  -- Mirrors the producer's approval, as its last answer reported it.
  status        text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'rejected')),
  PRIMARY KEY (producer, doctype)
);

-- Event Producer Last Update: everything up to last_seq has been applied
-- (or logged Failed/Parked). Set from RegisterConsumer's answer when first
-- registered, then only moved forward by the applier.
CREATE TABLE last_update (producer text PRIMARY KEY, last_seq bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now());
