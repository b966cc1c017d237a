-- Fluxon schema version 1 (initial), reverse
--   drop table user
--   drop table teacher
--   drop table course
--   drop table student
--   drop table enrollment
DROP TABLE "user";
DROP TABLE "teacher";
DROP TABLE "course";
DROP TABLE "student";
DROP TABLE "enrollment";
