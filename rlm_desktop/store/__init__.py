"""The case store: one SQLite file per case with documents, pages, email threads, FTS5 and failures."""
