-- The producer's own schema (es_producer). Tables arrive with the producer
-- service; this first migration only proves the runner.
COMMENT ON SCHEMA es_producer IS 'eventstream producer: consumers, update log, capture';
