-- Fluxon schema version 1 (initial), forward
--   create table user
--   create table owner
--   create table directory
--   create table file
--   create table file_metadata
CREATE TABLE "user" (
    "id" INTEGER PRIMARY KEY,
    "username" TEXT NOT NULL UNIQUE CHECK (length("username") <= 64),
    "password" TEXT NOT NULL,
    "created_at" INTEGER NOT NULL
);
CREATE TABLE "owner" (
    "user" INTEGER PRIMARY KEY,
    "storage_limit" INTEGER NOT NULL DEFAULT 1073741824,
    "storage_used" INTEGER NOT NULL DEFAULT 0,
    FOREIGN KEY ("user") REFERENCES "user" ("id") ON DELETE CASCADE
);
CREATE TABLE "directory" (
    "id" INTEGER PRIMARY KEY,
    "owner" INTEGER NOT NULL,
    "parent" INTEGER,
    "name" TEXT NOT NULL CHECK (length("name") <= 255),
    "created_at" INTEGER NOT NULL,
    FOREIGN KEY ("owner") REFERENCES "owner" ("user") ON DELETE CASCADE,
    FOREIGN KEY ("parent") REFERENCES "directory" ("id") ON DELETE CASCADE
);
CREATE INDEX "idx_directory_owner" ON "directory" ("owner");
CREATE INDEX "idx_directory_parent" ON "directory" ("parent");
CREATE UNIQUE INDEX "uq_directory_owner_parent_name" ON "directory" ("owner", "parent", "name");
CREATE TABLE "file" (
    "id" INTEGER PRIMARY KEY,
    "owner" INTEGER NOT NULL,
    "directory" INTEGER NOT NULL,
    "name" TEXT NOT NULL CHECK (length("name") <= 255),
    "size" INTEGER NOT NULL,
    "created_at" INTEGER NOT NULL,
    "modified_at" INTEGER NOT NULL,
    FOREIGN KEY ("owner") REFERENCES "owner" ("user") ON DELETE CASCADE,
    FOREIGN KEY ("directory") REFERENCES "directory" ("id") ON DELETE CASCADE
);
CREATE INDEX "idx_file_owner" ON "file" ("owner");
CREATE INDEX "idx_file_directory" ON "file" ("directory");
CREATE UNIQUE INDEX "uq_file_directory_name" ON "file" ("directory", "name");
CREATE TABLE "file_metadata" (
    "file" INTEGER PRIMARY KEY,
    "mime_type" TEXT NOT NULL DEFAULT 'application/octet-stream',
    FOREIGN KEY ("file") REFERENCES "file" ("id") ON DELETE CASCADE
);
