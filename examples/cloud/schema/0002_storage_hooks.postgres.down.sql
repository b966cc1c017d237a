-- Fluxon schema version 2 (storage_hooks), reverse, PostgreSQL
--   drop column directory.stored
--   rebuild table directory
--   drop column file.checksum
--   rebuild table file
--   drop table reservation
ALTER TABLE "directory" DROP COLUMN "stored";
ALTER TABLE "file" DROP COLUMN "checksum";
DROP TABLE "reservation";
