-- Fluxon schema version 2 (storage_hooks), forward
--   add column directory.stored
--   add column file.checksum
--   rebuild table file
--   create table reservation
ALTER TABLE "directory" ADD COLUMN "stored" INTEGER NOT NULL DEFAULT 1 CHECK ("stored" IN (0, 1));
CREATE TABLE "_fluxon_new_file" (
    "id" INTEGER PRIMARY KEY,
    "owner" INTEGER NOT NULL,
    "directory" INTEGER NOT NULL,
    "name" TEXT NOT NULL CHECK (length("name") <= 255),
    "size" INTEGER NOT NULL,
    "created_at" INTEGER NOT NULL,
    "modified_at" INTEGER NOT NULL,
    "checksum" BLOB NOT NULL,
    FOREIGN KEY ("owner") REFERENCES "owner" ("user") ON DELETE CASCADE,
    FOREIGN KEY ("directory") REFERENCES "directory" ("id") ON DELETE CASCADE
);
INSERT INTO "_fluxon_new_file" ("id", "owner", "directory", "name", "size", "created_at", "modified_at", "checksum") SELECT "id", COALESCE("owner", 0), COALESCE("directory", 0), COALESCE("name", ''), COALESCE("size", 0), COALESCE("created_at", 0), COALESCE("modified_at", 0), X'' FROM "file";
DROP TABLE "file";
ALTER TABLE "_fluxon_new_file" RENAME TO "file";
CREATE INDEX "idx_file_owner" ON "file" ("owner");
CREATE INDEX "idx_file_directory" ON "file" ("directory");
CREATE UNIQUE INDEX "uq_file_directory_name" ON "file" ("directory", "name");
CREATE TABLE "reservation" (
    "id" INTEGER PRIMARY KEY,
    "owner" INTEGER NOT NULL,
    "grant_nonce" BLOB NOT NULL UNIQUE,
    "directory" INTEGER NOT NULL,
    "name" TEXT NOT NULL CHECK (length("name") <= 255),
    "size" INTEGER NOT NULL,
    "mime_type" TEXT NOT NULL,
    "expires_at" INTEGER NOT NULL,
    FOREIGN KEY ("owner") REFERENCES "owner" ("user") ON DELETE CASCADE,
    FOREIGN KEY ("directory") REFERENCES "directory" ("id") ON DELETE CASCADE
);
CREATE INDEX "idx_reservation_owner" ON "reservation" ("owner");
CREATE INDEX "idx_reservation_directory" ON "reservation" ("directory");
