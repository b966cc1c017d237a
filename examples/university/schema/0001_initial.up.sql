-- Fluxon schema version 1 (initial), forward
--   create table user
--   create table teacher
--   create table course
--   create table student
--   create table enrollment
CREATE TABLE "user" (
    "id" INTEGER PRIMARY KEY,
    "username" TEXT NOT NULL UNIQUE CHECK (length("username") <= 100),
    "password" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "created_at" INTEGER NOT NULL
);
CREATE TABLE "teacher" (
    "user" INTEGER PRIMARY KEY,
    "name" TEXT NOT NULL,
    "department" TEXT NOT NULL,
    FOREIGN KEY ("user") REFERENCES "user" ("id") ON DELETE CASCADE
);
CREATE TABLE "course" (
    "id" INTEGER PRIMARY KEY,
    "name" TEXT NOT NULL,
    "code" TEXT NOT NULL UNIQUE CHECK (length("code") <= 16),
    "teacher" INTEGER NOT NULL,
    FOREIGN KEY ("teacher") REFERENCES "teacher" ("user") ON DELETE CASCADE
);
CREATE INDEX "idx_course_teacher" ON "course" ("teacher");
CREATE TABLE "student" (
    "user" INTEGER PRIMARY KEY,
    "name" TEXT NOT NULL,
    "birth_date" TEXT NOT NULL,
    FOREIGN KEY ("user") REFERENCES "user" ("id") ON DELETE CASCADE
);
CREATE TABLE "enrollment" (
    "id" INTEGER PRIMARY KEY,
    "student" INTEGER NOT NULL,
    "course" INTEGER NOT NULL,
    "date" INTEGER NOT NULL,
    FOREIGN KEY ("student") REFERENCES "student" ("user") ON DELETE CASCADE,
    FOREIGN KEY ("course") REFERENCES "course" ("id") ON DELETE CASCADE
);
CREATE INDEX "idx_enrollment_student" ON "enrollment" ("student");
CREATE INDEX "idx_enrollment_course" ON "enrollment" ("course");
CREATE UNIQUE INDEX "uq_enrollment_student_course" ON "enrollment" ("student", "course");
