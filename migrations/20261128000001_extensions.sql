-- Extensions the M01 schema relies on: trigram similarity for fuzzy entity resolution.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
