-- M01: canonical entities, their aliases, the source records resolved to them, and a search cache.
-- Every constraint is named so that errors (and the data layer's typed errors) can name it.

CREATE TABLE entities (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL,
    name            text        NOT NULL,
    normalized_name text        NOT NULL,
    attributes      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Optimistic locking: every update must name the version it read and bumps it by one.
    version         integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    search_vector   tsvector GENERATED ALWAYS AS (to_tsvector('simple', name)) STORED,
    CONSTRAINT entities_kind_check CHECK (kind IN ('person', 'organization', 'place', 'product')),
    CONSTRAINT entities_name_check CHECK (length(btrim(name)) BETWEEN 1 AND 500),
    CONSTRAINT entities_normalized_name_check CHECK (length(normalized_name) BETWEEN 1 AND 500),
    CONSTRAINT entities_attributes_check CHECK (jsonb_typeof(attributes) = 'object'),
    CONSTRAINT entities_version_check CHECK (version >= 1),
    CONSTRAINT entities_updated_after_created_check CHECK (updated_at >= created_at)
);
-- Fuzzy matching (similarity, %, <->) on normalized names.
CREATE INDEX entities_normalized_name_trgm_idx ON entities USING gin (normalized_name gin_trgm_ops);
-- Full-text search over names.
CREATE INDEX entities_search_vector_idx ON entities USING gin (search_vector);
-- Keyset pagination filtered by kind: WHERE kind = $1 AND id > $2 ORDER BY id.
CREATE INDEX entities_kind_id_idx ON entities (kind, id);

CREATE TABLE entity_aliases (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- An alias means nothing without its entity: deleting the entity deletes its aliases.
    entity_id        bigint      NOT NULL,
    alias            text        NOT NULL,
    normalized_alias text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entity_aliases_entity_id_fkey FOREIGN KEY (entity_id)
        REFERENCES entities (id) ON DELETE CASCADE,
    CONSTRAINT entity_aliases_alias_check CHECK (length(btrim(alias)) BETWEEN 1 AND 500),
    CONSTRAINT entity_aliases_normalized_alias_check CHECK (length(normalized_alias) BETWEEN 1 AND 500),
    -- Also the btree index for the foreign key (entity_id leads).
    CONSTRAINT entity_aliases_entity_id_normalized_alias_key UNIQUE (entity_id, normalized_alias)
);
CREATE INDEX entity_aliases_normalized_alias_trgm_idx ON entity_aliases USING gin (normalized_alias gin_trgm_ops);

CREATE TABLE source_records (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text        NOT NULL,
    external_id text        NOT NULL,
    payload     jsonb       NOT NULL,
    -- A record outlives the entity it was resolved to: deleting the entity un-resolves it.
    entity_id   bigint,
    match_score real,
    ingested_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT source_records_entity_id_fkey FOREIGN KEY (entity_id)
        REFERENCES entities (id) ON DELETE SET NULL,
    CONSTRAINT source_records_source_check CHECK (source ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    CONSTRAINT source_records_external_id_check CHECK (length(external_id) BETWEEN 1 AND 200),
    CONSTRAINT source_records_payload_check CHECK (jsonb_typeof(payload) = 'object'),
    CONSTRAINT source_records_match_score_check CHECK (match_score BETWEEN 0 AND 1),
    CONSTRAINT source_records_source_external_id_key UNIQUE (source, external_id)
);
-- For the foreign key (deleting an entity) and "records of an entity". Partial: most records
-- arrive unresolved, and a NULL needs no entry (bulk loads maintain one index fewer).
CREATE INDEX source_records_entity_id_idx ON source_records (entity_id) WHERE entity_id IS NOT NULL;
-- Keyset pagination filtered by source: WHERE source = $1 AND id > $2 ORDER BY id.
CREATE INDEX source_records_source_id_idx ON source_records (source, id);

CREATE TABLE search_cache (
    query_key  text        PRIMARY KEY,
    results    jsonb       NOT NULL,
    hit_count  bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    CONSTRAINT search_cache_query_key_check CHECK (length(query_key) BETWEEN 1 AND 512),
    CONSTRAINT search_cache_results_check CHECK (jsonb_typeof(results) = 'array'),
    CONSTRAINT search_cache_hit_count_check CHECK (hit_count >= 0),
    CONSTRAINT search_cache_expiry_check CHECK (expires_at > created_at)
);
-- Purging expired entries: DELETE ... WHERE expires_at < now().
CREATE INDEX search_cache_expires_at_idx ON search_cache (expires_at);
