-- Fluxon schema version 2 (storage_hooks), reverse
--   drop column directory.stored
--   rebuild table directory
--   drop column file.checksum
--   rebuild table file
--   drop table reservation
CREATE TABLE "_fluxon_new_directory" (
    "id" INTEGER PRIMARY KEY,
    "owner" INTEGER NOT NULL,
    "parent" INTEGER,
    "name" TEXT NOT NULL CHECK (length("name") <= 255),
    "created_at" INTEGER NOT NULL,
    FOREIGN KEY ("owner") REFERENCES "owner" ("user") ON DELETE CASCADE,
    FOREIGN KEY ("parent") REFERENCES "directory" ("id") ON DELETE CASCADE
);
INSERT INTO "_fluxon_new_directory" ("id", "owner", "parent", "name", "created_at") SELECT "id", COALESCE("owner", 0), "parent", COALESCE("name", ''), COALESCE("created_at", 0) FROM "directory";
DROP TABLE "directory";
ALTER TABLE "_fluxon_new_directory" RENAME TO "directory";
CREATE INDEX "idx_directory_owner" ON "directory" ("owner");
CREATE INDEX "idx_directory_parent" ON "directory" ("parent");
CREATE UNIQUE INDEX "uq_directory_owner_parent_name" ON "directory" ("owner", "parent", "name");
CREATE TABLE "_fluxon_new_file" (
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
INSERT INTO "_fluxon_new_file" ("id", "owner", "directory", "name", "size", "created_at", "modified_at") SELECT "id", COALESCE("owner", 0), COALESCE("directory", 0), COALESCE("name", ''), COALESCE("size", 0), COALESCE("created_at", 0), COALESCE("modified_at", 0) FROM "file";
DROP TABLE "file";
ALTER TABLE "_fluxon_new_file" RENAME TO "file";
CREATE INDEX "idx_file_owner" ON "file" ("owner");
CREATE INDEX "idx_file_directory" ON "file" ("directory");
CREATE UNIQUE INDEX "uq_file_directory_name" ON "file" ("directory", "name");
DROP TABLE "reservation";
