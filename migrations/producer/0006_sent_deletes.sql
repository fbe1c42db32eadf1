-- A Delete that a pull served is not yet a Delete the consumer applied: if
-- the consumer dies before committing it, its next pull asks again from its
-- old watermark, and the Delete must still be visible to it. So the record
-- of a sent document outlives the Delete: `deleted_seq` marks it, and the
-- record is dropped once the consumer pulls with after_seq >= deleted_seq
-- (it committed the Delete). Sending the document again clears the mark.
ALTER TABLE consumer_document ADD COLUMN deleted_seq bigint;
CREATE INDEX consumer_document_deleted ON consumer_document (site, deleted_seq)
  WHERE deleted_seq IS NOT NULL;
