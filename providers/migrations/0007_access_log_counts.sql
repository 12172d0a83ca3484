-- The access log stores one row per (caller, protocol, action, layers, status) and flush batch, with the
-- number of requests it stands for: a map client reading hundreds of tiles a second must not cost
-- PostgreSQL one insert per tile.
ALTER TABLE lantu.access_log ADD COLUMN requests integer NOT NULL DEFAULT 1;
