-- Fluxon schema version 1 (initial), reverse
--   drop table user
--   drop table owner
--   drop table directory
--   drop table file
--   drop table file_metadata
DROP TABLE "user";
DROP TABLE "owner";
DROP TABLE "directory";
DROP TABLE "file";
DROP TABLE "file_metadata";
