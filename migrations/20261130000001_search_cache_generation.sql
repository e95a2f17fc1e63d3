-- Search cache invalidation by generation. Any write to entities or aliases can change any
-- search's result (a new name may match any query), so entries are not tracked one by one:
-- every statement that writes either table bumps one generation number, in the writing
-- transaction, and cache keys carry the generation they were computed at. A reader sees the
-- new generation exactly when it sees the write, so a stale entry is never served; entries of
-- older generations are never read again and expire (TTL). Writes to source_records do not
-- bump it (bulk loads would wipe the cache): a search filtered by source may miss a record's
-- new link until its entry expires.
CREATE TABLE search_generation (
    singleton  boolean PRIMARY KEY DEFAULT true,
    generation bigint  NOT NULL,
    CONSTRAINT search_generation_singleton_check CHECK (singleton)
);
INSERT INTO search_generation (singleton, generation) VALUES (true, 1);

CREATE FUNCTION bump_search_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE search_generation SET generation = generation + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER entities_bump_search_generation
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON entities
    FOR EACH STATEMENT EXECUTE FUNCTION bump_search_generation();
CREATE TRIGGER entity_aliases_bump_search_generation
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON entity_aliases
    FOR EACH STATEMENT EXECUTE FUNCTION bump_search_generation();
