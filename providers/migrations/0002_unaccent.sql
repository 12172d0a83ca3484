-- CQL2 ACCENTI() (accent-insensitive comparison) uses PostgreSQL's unaccent dictionary.
CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA lantu;
