-- Bounded staleness for the search cache under continuous writes. Moving the generation on
-- every write (20261130000001) means 10 % writes at 50 searches/s cut the hit ratio from 0.63
-- to 0.12 (docs/results/2026-12-02-mixed-writes.md). With `max_staleness` above zero, the
-- generation moves at most once per `max_staleness`:
--
-- * a write more than `max_staleness` after the generation last moved moves it at once (so a
--   quiet database stays exact);
-- * a write sooner than that marks it `pending`; readers take the generation as moved once
--   `max_staleness` has passed since `moved_at` (`db::search_cache`'s `GENERATION_NOW`), so a page may be
--   served up to `max_staleness` after a write that changes it, never longer;
-- * the next write after that makes the move real (from the time readers saw it), then
--   applies the rules above to itself.
--
-- `max_staleness` is 0 by default: every write moves the generation at once, exactly as
-- before (one UPDATE of one row per writing statement). The service sets it
-- (`pgperf serve --cache-max-staleness-ms`).
ALTER TABLE search_generation
    ADD COLUMN max_staleness interval    NOT NULL DEFAULT '0 s',
    ADD COLUMN moved_at      timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN pending       boolean     NOT NULL DEFAULT false,
    ADD CONSTRAINT search_generation_max_staleness_check
        CHECK (max_staleness >= '0 s' AND max_staleness <= '1 hour');

CREATE OR REPLACE FUNCTION bump_search_generation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := clock_timestamp();
BEGIN
    UPDATE search_generation SET (generation, moved_at, pending) = (
        SELECT CASE WHEN t - m >= max_staleness THEN g + 1 ELSE g END,
               CASE WHEN t - m >= max_staleness THEN t ELSE m END,
               t - m < max_staleness
          FROM (SELECT CASE WHEN pending AND t - moved_at >= max_staleness
                            THEN generation + 1 ELSE generation END AS g,
                       CASE WHEN pending AND t - moved_at >= max_staleness
                            THEN moved_at + max_staleness ELSE moved_at END AS m) AS seen);
    RETURN NULL;
END
$$;
