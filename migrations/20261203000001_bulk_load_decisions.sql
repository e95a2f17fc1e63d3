-- Parallel COPY (`pgperf_db::ingest::parallel`) loads over several connections, each in a
-- prepared transaction of its own (two-phase commit). The first stream's transaction also
-- inserts the load's row here, so the load is decided, all at once, when that transaction
-- commits. A load whose process died between preparing and committing is settled by the next
-- parallel load from this table: committed if its row is here, rolled back otherwise. The row
-- is deleted once every stream of its load has committed, so the table holds only loads in
-- flight.
CREATE TABLE bulk_load_decisions (
    -- The load's name as the loads make it (hex time, dash, hex process id); it is part of
    -- the prepared transactions' names, which are spelled into SQL.
    load_id    text        PRIMARY KEY CONSTRAINT bulk_load_decisions_load_id_check
                           CHECK (load_id ~ '^[0-9a-f]{1,32}-[0-9a-f]{1,16}$'),
    decided_at timestamptz NOT NULL DEFAULT now()
);
